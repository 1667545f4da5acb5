"""Training data: folder tree and manifests, prompts from templates or captions, split by object."""

from __future__ import annotations

import json

import pytest

from realrag.training import TrainConfig
from realrag.training.data import DataError, load_dataset

from .conftest import TINY_CLIP, make_objects


def config(data, **overrides):
    return TrainConfig(data=data, generator="tiny-sd", encoder_model=TINY_CLIP, **overrides)


def test_folder_tree_templates_and_split_by_object(tiny_data):
    ds = load_dataset(config(tiny_data, templates=["a photo of a {label}", "a {label}"], held_out_fraction=0.34))
    assert len(ds.corpus) == 18
    assert {i.label for i in ds.corpus} >= {"red car", "blue truck"}
    assert len(ds.prompts) == 12  # 6 objects x 2 templates
    held, train = set(ds.objects("held_out")), set(ds.objects("train"))
    assert len(held) == 2 and len(train) == 4 and not held & train
    for prompt in ds.prompts:
        assert {ds.image(i).object_id for i in prompt.positives} == {prompt.object_id}
        assert len(prompt.positives) == 3  # every image of the object is a positive
    # deterministic: same inputs, same split and hash; another seed, another split
    again = load_dataset(config(tiny_data, templates=["a photo of a {label}", "a {label}"], held_out_fraction=0.34))
    assert again.data_hash == ds.data_hash and set(again.objects("held_out")) == held
    other = load_dataset(config(tiny_data, templates=["a photo of a {label}", "a {label}"], held_out_fraction=0.34, seed=5))
    assert other.data_hash != ds.data_hash


def test_explicit_held_out_objects_and_validation_split(tiny_data):
    ds = load_dataset(config(tiny_data, held_out_objects=["red_car"], val_fraction=0.2))
    assert ds.objects("held_out") == ["red_car"]
    assert len(ds.objects("val")) == 1
    assert len(ds.objects("train")) == 4
    with pytest.raises(DataError, match="not in the data"):
        load_dataset(config(tiny_data, held_out_objects=["no_such_object"]))


def test_jsonl_and_csv_manifests_with_captions(tmp_path):
    root = make_objects(tmp_path / "imgs", per_object=2)
    rows = [
        {"path": f"imgs/{folder.name}/{image.name}", "object_id": folder.name, "label": folder.name.upper(),
         "caption": f"{folder.name} photo {image.stem}"}
        for folder in sorted(root.iterdir()) for image in sorted(folder.iterdir())
    ]
    jsonl = tmp_path / "manifest.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_dataset(config(jsonl, prompt_source="captions"))
    assert len(ds.corpus) == 12 and len(ds.prompts) == 12
    for prompt in ds.prompts:
        assert len(prompt.positives) == 1  # a caption's positive is its own image
        assert ds.image(prompt.positives[0]).caption == prompt.text
    csv_file = tmp_path / "manifest.csv"
    csv_file.write_text(
        "path,object_id,caption,label\n"
        + "".join(f"{r['path']},{r['object_id']},{r['caption']},{r['label']}\n" for r in rows)
    )
    from_csv = load_dataset(config(csv_file, prompt_source="captions"))
    assert from_csv.data_hash == ds.data_hash


def test_bad_data_is_refused_with_a_clear_error(tmp_path, tiny_data):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": "missing.png", "object_id": "x"}) + "\n")
    with pytest.raises(DataError, match="not found"):
        load_dataset(config(manifest))
    manifest.write_text(json.dumps({"path": "a.png"}) + "\n")
    with pytest.raises(DataError, match="object_id"):
        load_dataset(config(manifest))
    # the same image under two objects
    image = next((tiny_data / "red_car").iterdir())
    manifest.write_text(
        json.dumps({"path": str(image), "object_id": "a"}) + "\n" + json.dumps({"path": str(image), "object_id": "b"}) + "\n"
    )
    with pytest.raises(DataError, match="two objects|under objects"):
        load_dataset(config(manifest))
    # captions requested, but the folder tree has none
    with pytest.raises(DataError, match="no captioned image"):
        load_dataset(config(tiny_data, prompt_source="captions"))
    with pytest.raises(DataError, match="not found"):
        load_dataset(config(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="names neither"):
        config(tiny_data, templates=["a photo"])
