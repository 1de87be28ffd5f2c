import pytest


@pytest.fixture(scope="session")
def settings_and_detector():
    from worker.runtime import start

    return start()
