"""Config loading: defaults, overrides, 'extends', and errors that name the key."""
import pytest

from tandem.config import load_config, parse_override
from tandem.errors import TandemError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path):
    path = write(tmp_path, "c.yaml", "task: general\ntrain:\n  epochs: 3\n")
    config = load_config(path, ["train.lr=0.01", "eval.cutoffs=[5, 10]", "sampler.name=popularity"])
    assert config.task == "general" and config.train.epochs == 3 and config.train.lr == 0.01
    assert config.eval.cutoffs == [5, 10] and config.sampler["name"] == "popularity"
    assert config.train.batch_size == 512  # default kept


def test_extends_merges_over_the_base(tmp_path):
    write(tmp_path, "base.yaml", "task: general\ntrain:\n  epochs: 3\n  lr: 0.1\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\ntrain:\n  epochs: 7\n")
    config = load_config(child)
    assert config.task == "general" and config.train.epochs == 7 and config.train.lr == 0.1


@pytest.mark.parametrize(
    "text, message",
    [
        ("trian:\n  epochs: 3\n", "'trian'"),
        ("train:\n  epoch: 3\n", "'train.epoch'"),
        ("train:\n  epochs: three\n", "train.epochs"),
        ("train:\n  lr: [1]\n", "train.lr"),
        ("task: ranking\n", "task"),
        ("eval:\n  monitor: ndcg@7\n", "eval.monitor"),
        ("train:\n  batch_size: 0\n", "train.batch_size"),
        ("- a\n- b\n", "top level"),
        ("retriever:\n  embedding_dim: 3\n", "retriever.name"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, message):
    with pytest.raises(TandemError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_config(write(tmp_path, "bad.yaml", text))


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(TandemError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(TandemError, match="key=value"):
        parse_override("train.epochs")


def test_a_renamed_component_section_drops_the_base_options(tmp_path):
    write(tmp_path, "base.yaml", "loss: {name: croloss, alpha: 0.8}\nsampler: {name: midx, num_clusters: 8}\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nloss: {name: bpr}\nsampler: {num_clusters: 16}\n")
    config = load_config(child)
    assert config.loss == {"name": "bpr"}
    assert config.sampler == {"name": "midx", "num_clusters": 16}
