import pytest

from loopreg.body import BodyModel
from loopreg.body.registry import load_model_data


@pytest.fixture(scope="session")
def default_data():
    return load_model_data()


@pytest.fixture(scope="session")
def default_model(default_data):
    return BodyModel(default_data)
