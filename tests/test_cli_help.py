"""The command line explains itself: every flag has help text that names its default,
``--version`` answers, and an unknown flag is refused naming the closest one."""

import pytest

from srsan_np import __version__
from srsan_np.cli import build_parser, main


def _commands():
    return build_parser()._subparsers._group_actions[0].choices


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_flag_has_help_and_its_default(name):
    for action in _commands()[name]._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, (name, action.option_strings)
        assert action.required or "default" in action.help, (name, action.option_strings)


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"srsan-np {__version__}"


def test_an_unknown_flag_names_the_closest(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--lrr", "0.1", "--epochs", "1"])
    assert stop.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == "srsan-np train: error: unrecognized arguments: --lrr (did you mean --lr?) 0.1"


@pytest.mark.parametrize("key, meant", [("learning_rate", "lr"), ("weight_decay", "l2"),
                                        ("batchSize", "batch_size"), ("epoch", "epochs")])
def test_an_unknown_config_key_names_the_one_meant(tmp_path, capsys, key, meant):
    config = tmp_path / "c.json"
    config.write_text(f'{{"train": {{"{key}": 1}}}}')
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"c.json: train: unknown setting {key!r} (did you mean {meant!r}?)" in line
    assert not (tmp_path / "r").exists()
