from pytest_guards.faults import http_error, valid


async def test_qwen_breaker_opens_downshifts_and_recovers(guard_system, faulty_llm, guard_clock, guard_metrics):
    faulty_llm.set("qwen", http_error(500))
    for i in range(10):
        response = await guard_system.post_brief(f"a citrus scent #{i}")
        assert response.status_code == 200
        assert response.json()["model"] == "mistral"      # qwen failed, the next model answered
    assert guard_system.state("qwen") == "open"
    assert guard_system.mode == "balanced"
    assert guard_metrics.value("circuit_breaker_state", model="qwen") == 1

    guard_clock.advance(60)
    assert guard_system.state("qwen") == "half_open"
    assert guard_metrics.value("circuit_breaker_state", model="qwen") == 2

    faulty_llm.set("qwen", valid())
    for i in range(5):
        response = await guard_system.post_brief(f"a woody scent #{i}", mode="creative")
        assert response.json()["model"] == "qwen"
    assert guard_system.state("qwen") == "closed"
    assert guard_metrics.value("circuit_breaker_state", model="qwen") == 0
    assert faulty_llm.call_count("qwen") == 5      # set() starts a fresh script and call log
