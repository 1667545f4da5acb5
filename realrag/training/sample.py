"""Stage 1, sample: m images per prompt from the frozen target generator, cached with a manifest.

The generator is loaded through the registry exactly as the worker loads it
(``family_module(spec).load(spec, device)``) and called through the Generator protocol with no
references. The m samples of one prompt go into one ``generate`` call (one seed each, batched by the
family's pipeline). Seeds derive from (config seed, prompt id, sample index), so a sample does not
depend on the order or on how many prompts ran before: an interrupted run resumes to the same files.

Layout: ``WORK/samples/<generator>/<fingerprint>/<prompt_id>/<k>.png``, ``manifest.json`` (generator
spec, sampling parameters and the digest of the generator's weights, which the fingerprint covers)
and ``done.jsonl``, an append-only log with one line per finished prompt, written after its images:
the commit point of the stage. Keying on the weights' content (not the model key or its path) means
retrained or replaced weights never reuse stale samples, nor the negatives mined from them; the
price is loading the generator on a fully cached rerun, to hash it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import ProgressHook, StageTiming, progress, write_json
from .config import TrainConfig, fingerprint
from .data import Dataset


@dataclass
class Samples:
    root: Path
    fingerprint: str
    files: dict[str, list[dict[str, Any]]]  # prompt id -> [{"file", "seed", "index"}], index order
    weights: str = ""  # generator_digest() of the generator that drew them

    def paths(self, prompt_id: str) -> list[Path]:
        return [self.root / entry["file"] for entry in self.files.get(prompt_id, [])]


def read_log(path: Path) -> dict[str, list[dict[str, Any]]]:
    """prompt id -> sample entries; the last line wins; a torn last line (a crash mid-write) is skipped."""
    done: dict[str, list[dict[str, Any]]] = {}
    if path.is_file():
        for line in path.read_text("utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[record["prompt"]] = record["samples"]
    return done


def terminate_torn_line(path: Path) -> None:
    """After a crash mid-line, start the next record on a fresh line."""
    if path.is_file() and path.stat().st_size:
        with path.open("rb+") as fh:
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                fh.write(b"\n")


def sample_seed(seed: int, prompt_id: str, index: int) -> int:
    digest = hashlib.sha256(f"{seed}:{prompt_id}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def sampling_params(config: TrainConfig, spec) -> dict[str, Any]:
    return {
        "steps": config.sample_steps or spec.default_steps,
        "guidance": config.sample_guidance if config.sample_guidance is not None else spec.default_guidance,
        "width": config.sample_width or spec.default_width,
        "height": config.sample_height or spec.default_height,
        "seed": config.seed,
    }


def _weight_holders(obj: Any, prefix: str, seen: set[int], depth: int = 0) -> list[tuple[str, Any]]:
    """(path, torch module or config-bearing part) reachable from a generator: its attributes, a
    diffusers pipeline's ``components``, a few levels deep; each object once."""
    import dataclasses

    import torch

    if obj is None or id(obj) in seen or depth > 3 or isinstance(obj, str | bytes | int | float | bool | Path):
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.nn.Module):
        return [(prefix, obj)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [(prefix, dataclasses.asdict(obj))]
    components = getattr(obj, "components", None)  # a diffusers pipeline
    config = getattr(obj, "config", None)
    if not isinstance(components, dict) and depth and isinstance(config, dict):  # a scheduler: its settings count too
        return [(prefix, dict(config))]
    children = components if isinstance(components, dict) else getattr(obj, "__dict__", {})
    found = []
    for name, child in sorted(children.items()):
        found += _weight_holders(child, f"{prefix}.{name}", seen, depth + 1)
    return found


def generator_digest(generator: Any) -> str:
    """sha256 over the generator's weights: every torch module's state dict (names, dtypes, shapes,
    bytes) plus the configs of its other parts (schedulers, model configs). Changed weights give a
    new digest; the same weights loaded again give the same one."""
    import torch

    h = hashlib.sha256()
    tensors = 0
    for path, part in _weight_holders(generator, "", set()):
        if not isinstance(part, torch.nn.Module):
            h.update(f"{path}={json.dumps(part, sort_keys=True, default=str)}".encode())
            continue
        for name, tensor in part.state_dict().items():
            t = tensor.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"{path}.{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
            h.update(t.view(torch.uint8).numpy())
            tensors += 1
    if not tensors:
        raise ValueError(f"found no torch weights in generator {type(generator).__name__}: cannot key its samples")
    return h.hexdigest()[:32]


def _release_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def load_generator(key: str, device: str):
    """The same generator object the worker builds for `key`."""
    from generator_service.families import family_module
    from services.registry import get_spec

    spec = get_spec(key)
    return family_module(spec).load(spec, device)


def run_sample(
    config: TrainConfig,
    dataset: Dataset,
    generator=None,
    hook: ProgressHook | None = None,
) -> tuple[Samples, StageTiming]:
    from generator_service.families.base import GenerationInputs
    from services.registry import get_spec

    try:
        spec = get_spec(config.generator)
    except KeyError:
        raise ValueError(f"unknown generator model key {config.generator!r} (see services/models.toml)") from None
    params = sampling_params(config, spec)
    spec_identity = spec.model_dump(exclude={"retrievers", "description"})
    owned_generator = generator is None
    setup_seconds = 0.0
    if generator is None:
        loaded = time.perf_counter()
        generator = load_generator(config.generator, config.generator_device)
        setup_seconds = time.perf_counter() - loaded
    weights = generator_digest(generator)
    key = fingerprint("sample-v2", spec_identity, params, weights)
    root = Path(config.work_dir) / "samples" / config.generator / key
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        write_json(manifest_path, {"generator": config.generator, "spec": spec_identity, "params": params,
                                   "weights_sha256": weights})
    log_path = root / "done.jsonl"
    done = read_log(log_path)
    terminate_torn_line(log_path)
    m = config.samples_per_prompt

    def complete(prompt_id: str) -> bool:
        entries = done.get(prompt_id, [])
        return len(entries) >= m and all((root / e["file"]).is_file() for e in entries[:m])

    todo = [p for p in dataset.prompts if not complete(p.id)]
    timing = StageTiming("sample", "images", cached=(len(dataset.prompts) - len(todo)) * m)
    with timing:
        timing.setup_seconds = setup_seconds
        bar = progress(total=len(dataset.prompts) * m, desc=f"sample {config.generator}", unit="img",
                       initial=timing.cached)
        for prompt in todo:
            have = [e for e in done.get(prompt.id, []) if (root / e["file"]).is_file()]
            indices = list(range(len(have), m))
            seeds = [sample_seed(config.seed, prompt.id, k) for k in indices]
            images = generator.generate(
                GenerationInputs(
                    prompt=prompt.text,
                    seeds=seeds,
                    steps=params["steps"],
                    guidance=params["guidance"],
                    width=params["width"],
                    height=params["height"],
                )
            )
            if len(images) != len(seeds):
                raise RuntimeError(f"generator {config.generator!r} returned {len(images)} images for {len(seeds)} seeds")
            entries = list(have)
            for k, seed, image in zip(indices, seeds, images, strict=True):
                file = f"{prompt.id}/{k}.png"
                (root / prompt.id).mkdir(parents=True, exist_ok=True)
                image.save(root / file)
                entries.append({"file": file, "seed": seed, "index": k})
            done[prompt.id] = entries
            with log_path.open("a", encoding="utf-8") as log:  # commit point: a restart skips it
                log.write(json.dumps({"prompt": prompt.id, "samples": entries}) + "\n")
            timing.done += len(indices)
            bar.update(len(indices))
            if hook:
                hook("sample", timing.done)
        bar.close()
    if owned_generator:  # free the GPU for the training stage
        del generator
        _release_accelerator_memory()
    files = {p.id: done[p.id][:m] for p in dataset.prompts}
    return Samples(root, key, files, weights), timing
