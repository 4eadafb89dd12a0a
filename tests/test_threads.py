import re

import torch
from threadpoolctl import threadpool_info, threadpool_limits

from charrnn.threads import PhaseThreads


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_each_phase_runs_with_its_own_count_and_the_process_gets_its_own_back():
    with threadpool_limits(2, user_api="blas"):
        torch_before = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            threads = PhaseThreads()
            assert re.fullmatch(r"threads: training 2, evaluation 1, sampling 1 \(\w+ 2, torch 2\)", threads.describe())
            for phase, count in (("training", 2), ("evaluation", 1), ("sampling", 1)):
                with threads.phase(phase):
                    assert blas_threads() == {count} and torch.get_num_threads() == count, phase
                assert blas_threads() == {2} and torch.get_num_threads() == 2
        finally:
            torch.set_num_threads(torch_before)


def test_a_process_started_with_one_thread_keeps_one_in_every_phase():
    with threadpool_limits(1, user_api="blas"):
        threads = PhaseThreads()
        with threads.phase("training"):
            assert blas_threads() == {1}
        assert re.match(r"threads: training 1, evaluation 1, sampling 1 \(\w+ 1", threads.describe())
