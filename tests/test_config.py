import pytest

from competition.config import PROJECT_CONFIGS, load_config
from competition.errors import InputError


def write(tmp_path, text):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return str(path)


def test_every_shipped_config_loads():
    for path in PROJECT_CONFIGS.glob("*.toml"):
        assert load_config(str(path)).name == path.stem


def test_shared_tables_apply_to_both_and_specialist_tables_override(tmp_path):
    config = load_config(write(tmp_path, "[model]\ndropout = 0.1\n[partial.model]\ndropout = 0.4\n"))
    assert config.full.model.dropout == 0.1
    assert config.partial.model.dropout == 0.4
    assert config.name == "exp"


def test_cli_overrides_reach_the_right_specialist(tmp_path):
    path = write(tmp_path, "[train]\nepochs = 3\n")
    config = load_config(path, ["train.epochs=7", "full.model.filters=[8, 16]", "augment.flip=0"])
    assert config.full.train.epochs == config.partial.train.epochs == 7
    assert config.full.model.filters == [8, 16] and config.partial.model.filters != [8, 16]
    assert config.partial.augment.flip == 0.0 and isinstance(config.partial.augment.flip, float)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[model]\ndropuot = 0.1\n", "unknown key 'model.dropuot'"),
        ("[train]\nepochs = 'ten'\n", "key 'train.epochs' must be int"),
        ("[train]\nepochs = 2.5\n", "key 'train.epochs' must be int"),
        ("[model]\nfilters = [8, 'x']\n", "key 'model.filters' must be int"),
        ("[model]\nbatch_norm = 1\n", "key 'model.batch_norm' must be bool"),
        ("[full]\nmodel = 3\n", "key 'full.model' must be a table"),
        ("seed = \n", "not valid TOML"),
        ("[train]\nschedule = 'linear'\n", "key 'full.train.schedule' must be one of plateau, cosine"),
        ("[partial.model]\ninput_downsample = 5\n", "key 'partial.model.input_downsample' must divide 96"),
        ("specialists = ['partial']\n", "key 'specialists' must .* cover all 30 coordinates"),
        ("specialists = ['full', 'ful']\n", "key 'specialists' must name each of full, partial at most once"),
    ],
)
def test_bad_configs_are_refused_with_the_key(tmp_path, text, message):
    with pytest.raises(InputError, match=message) as error:
        load_config(write(tmp_path, text))
    assert "exp.toml" in str(error.value)


def test_unknown_config_name_lists_the_known_ones():
    with pytest.raises(InputError, match="known: .*default"):
        load_config("no-such-config")
