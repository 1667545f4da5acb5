"""One loaded generator per model key per process: loaded on first use, then reused."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest

from generator_service.loader import DeviceUnavailable, get_generator, loaded_devices, loaded_models, worker_device
from services.settings import Settings


@pytest.fixture
def keys() -> tuple[str, str]:
    """Model keys no other test has loaded (the cache lives as long as the process)."""
    prefix = f"loader-{uuid.uuid4().hex[:8]}"
    return f"{prefix}-a", f"{prefix}-b"


@pytest.fixture
def settings(tmp_path, keys) -> Settings:
    """Two tiny-sd twins under `keys`, from a user models file as a deployment would add them."""
    models_file = tmp_path / "models.toml"
    entry = '[models.{}]\nfamily = "sd"\nsource = "tiny"\nadapter = "random"\nmax_references = 1\n\n'
    models_file.write_text("".join(entry.format(key) for key in keys))
    return Settings(data_dir=tmp_path, models_file=models_file, device="cpu")


def test_loads_once_per_key_then_reuses_it(settings, keys):
    key, _ = keys
    assert key not in loaded_models()
    generator, load_s = get_generator(key, settings)
    assert load_s > 0 and generator.key == key and generator.family == "sd"
    again, again_s = get_generator(key, settings)
    assert again is generator and again_s == 0.0
    assert key in loaded_models()


def test_each_key_has_its_own_generator(settings, keys):
    a, b = keys
    first, second = get_generator(a, settings)[0], get_generator(b, settings)[0]
    assert first is not second and (first.key, second.key) == (a, b)
    assert {a, b} <= set(loaded_models())


def test_concurrent_first_calls_load_once(settings, keys):
    key, _ = keys
    barrier, results = threading.Barrier(4), []

    def call() -> None:
        barrier.wait()
        results.append(get_generator(key, settings))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(generator) for generator, _ in results}) == 1
    assert sorted(load_s > 0 for _, load_s in results) == [False, False, False, True]


def test_unknown_key_raises_and_caches_nothing(settings):
    with pytest.raises(KeyError):
        get_generator("no-such-model", settings)
    assert "no-such-model" not in loaded_models()


def test_models_load_on_the_configured_device(settings, keys):
    assert worker_device(settings) == "cpu"
    assert worker_device(settings.model_copy(update={"device": "meta"})) == "meta", "a non-CUDA device is used as given"
    generator, _ = get_generator(keys[0], settings)
    assert generator.device == "cpu"


def test_an_explicit_cuda_device_this_machine_lacks_fails_loudly(settings):
    """REALRAG_DEVICE=cuda:N (set by the GPU overlays) never falls back to the CPU: no GPU, or no
    device N, is an error naming the device."""
    import torch

    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU (cuda:0 on a CPU machine)
    with pytest.raises(DeviceUnavailable, match=f"REALRAG_DEVICE={missing}"):
        worker_device(settings.model_copy(update={"device": missing}))
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="no usable CUDA GPU"):
            worker_device(settings.model_copy(update={"device": "cuda"}))


def test_auto_falls_back_to_the_cpu_and_says_so(settings, caplog):
    import torch

    if torch.cuda.is_available():
        assert worker_device(settings.model_copy(update={"device": "auto"})) == "cuda"
        return
    with caplog.at_level(logging.WARNING, logger="generator_service.loader"):
        assert worker_device(settings.model_copy(update={"device": "auto"})) == "cpu"
    assert "generating on the CPU" in caplog.text


def test_a_load_records_its_device(settings, keys):
    get_generator(keys[1], settings)
    assert loaded_devices()[keys[1]] == "cpu"
