import math

import pytest

from competition.config import PROJECT_CONFIGS, BlendConfig, Config, load_config, resolve
from competition.errors import InputError
from competition.models import FAMILIES


def write(tmp_path, text):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return str(path)


def test_every_shipped_config_loads():
    for path in PROJECT_CONFIGS.glob("*.toml"):
        assert load_config(str(path)).name == path.stem


def test_shared_tables_apply_to_every_specialist_and_specialist_tables_override(tmp_path):
    config = load_config(write(tmp_path, "[model]\ndropout = 0.1\n[specialists.partial.model]\ndropout = 0.4\n"))
    assert config.specialist("full").model.dropout == 0.1
    assert config.specialist("partial").model.dropout == 0.4
    assert config.name == "exp" and config.trained == ["full", "partial"]


def test_a_specialist_can_be_left_untrained_and_inference_has_its_own_table(tmp_path):
    config = load_config(write(tmp_path, "[specialists.partial]\nenabled = false\n[inference]\ntta = false\n"))
    assert config.trained == ["full"]
    assert config.inference.tta is False and config.inference.prefer == ["partial", "full"]


def test_cli_overrides_reach_the_right_specialist(tmp_path):
    path = write(tmp_path, "[train]\nepochs = 3\n[specialists.full.model]\ndropout = 0.4\n")
    config = load_config(
        path,
        [
            "train.epochs=7",
            "specialists.full.model.filters=[8, 16]",
            "augment.flip=0",
            "model.dropout=0.2",
            "inference.tta=false",
        ],
    )
    full, partial = config.specialist("full"), config.specialist("partial")
    assert full.train.epochs == partial.train.epochs == 7
    assert full.model.filters == [8, 16] and partial.model.filters != [8, 16]
    assert partial.augment.flip == 0.0 and isinstance(partial.augment.flip, float)
    assert full.model.dropout == partial.model.dropout == 0.2  # a shared --set reaches every specialist
    assert config.inference.tta is False


def test_the_model_family_is_picked_by_name(tmp_path):
    config = load_config(write(tmp_path, "[model]\nfamily = 'regression'\nfilters = [8]\n"))
    assert type(config.specialist("full").model) is FAMILIES["regression"].Config
    assert config.specialist("full").model.filters == [8]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[model]\ndropuot = 0.1\n", "unknown key 'model.dropuot'"),
        ("[train]\nepochs = 'ten'\n", "key 'train.epochs' must be int"),
        ("[train]\nepochs = 2.5\n", "key 'train.epochs' must be int"),
        ("[model]\nfilters = [8, 'x']\n", "key 'model.filters' must be int"),
        ("[model]\nbatch_norm = 1\n", "key 'model.batch_norm' must be bool"),
        ("[specialists.full]\nmodel = 3\n", "key 'specialists.full.model' must be a table"),
        ("seed = \n", "not valid TOML"),
        ("[train]\nschedule = 'linear'\n", "key 'train.schedule' must be one of plateau, cosine"),
        ("[train]\nvalidate_every = 5\n", "key 'specialists.full.train.validate_every' above 1 needs the cosine"),
        (
            "[specialists.partial.model]\ninput_downsample = 5\n",
            "key 'specialists.partial.model.input_downsample' must be a whole divisor of 96",
        ),
        ("[specialists.full]\nenabled = false\n", "must cover all 30 coordinates"),
        ("[specialists.ful]\nenabled = false\n", "unknown specialist 'ful'"),
        ("[model]\nfamily = 'hourglass'\n", "key 'model.family' must be one of regression"),
        ("[inference]\nprefer = ['full']\n", "key 'inference.prefer' must name each of full, partial once"),
        ("[inference]\nprefer = ['full', 'ful']\n", "key 'inference.prefer' must be one of full, partial"),
        # values of the right type outside the range declared beside the key
        ("[train]\nepochs = 0\n", "key 'train.epochs' must be within 1..100000, got 0"),
        ("[train]\nbatch_size = -3\n", "key 'train.batch_size' must be within 1..4096"),
        ("[train]\nlearning_rate = nan\n", "key 'train.learning_rate' must be within"),
        ("[train]\nmax_minutes = -1\n", "key 'train.max_minutes' must be within 0..10080"),
        ("[model]\ndropout = 1.0\n", "key 'model.dropout' must be at least 0 and below 1"),
        ("[model]\nfilters = [8, 0]\n", "key 'model.filters' must be within 1..4096, got 0 in"),
        ("[model]\nfilters = []\n", "key 'model.filters' must not be empty"),
        ("[augment]\nflip = 1.5\n", "key 'augment.flip' must be within 0..1"),
        ("seed = -1\n", "key 'seed' must be within 0"),
        ("[train]\nmin_learning_rate = inf\n", "key 'train.min_learning_rate' must be within 0..10.0, got inf"),
        ("[model]\ndense_units = 1_000_000_000\n", "key 'model.dense_units' must be within 1..65536"),
        (
            "[model]\nfilters = [8, 8, 8, 8, 8, 8, 8]\n",
            "model.filters' \\(7 blocks\\) and .*a 96x96 face.*at most 6 blocks",
        ),
        ("[model]\nstrided_blocks = 1\n", "unknown key 'model.strided_blocks'"),
        ("[train]\nmembers = 2\n", "unknown key 'train.members'"),
    ],
)
def test_bad_configs_are_refused_with_the_key(tmp_path, text, message):
    with pytest.raises(InputError, match=message) as error:
        load_config(write(tmp_path, text))
    assert "exp.toml" in str(error.value)


def test_a_bad_override_names_the_option(tmp_path):
    with pytest.raises(InputError, match="--set: key 'specialists.full.train.epochs' must be within 1"):
        load_config(write(tmp_path, ""), ["train.epochs=0"])


def test_the_defaults_lie_within_their_own_ranges():
    assert resolve(Config().to_dict(), "defaults").to_dict() == Config().to_dict()
    assert not math.isnan(BlendConfig().alpha)


def test_unknown_config_name_lists_the_known_ones():
    with pytest.raises(InputError, match="known: .*default"):
        load_config("no-such-config")


@pytest.mark.parametrize("kind", ["config", "search space"])
def test_a_toml_file_that_is_not_utf8_text_is_one_line_naming_it(tmp_path, kind):
    from competition.tune import load_search_space

    path = tmp_path / "bad.toml"
    path.write_bytes(b"seed = 1\n\x00\xff")
    with pytest.raises(InputError, match=r"bad.toml: not UTF-8 text: byte 10 is 0xff"):
        load_config(str(path)) if kind == "config" else load_search_space(str(path), Config().specialist("full"))
