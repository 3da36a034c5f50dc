import logging

import numpy as np
import pytest
from ads_fixtures import write_corpus, write_user

from recsys.data.formats import detect_format, load
from recsys.data.formats.ads import ADS_CATEGORIES, tipi_traits
from recsys.data.interactions import BIG_FIVE
from recsys.errors import DataFormatError

# answers a1..a10 and the scores worked out by hand from the TIPI key
# (O = (a5 - a10)/2, C = (a3 - a8)/2, E = (a1 - a6)/2, A = (a7 - a2)/2, N = (a4 - a9)/2):
ANSWERS = [1, -2, 2, 1, 0, -1, 2, 0, -1, 1]
HAND_TRAITS = {"openness": -0.5, "conscientiousness": 1.0, "extraversion": 1.0, "agreeableness": 2.0,
               "neuroticism": 1.0}


def _ratings(fill: int = 3) -> np.ndarray:
    return np.full((20, 15), fill, dtype=int)


def test_tipi_scoring_matches_hand_values():
    np.testing.assert_allclose(tipi_traits(ANSWERS), [HAND_TRAITS[t] for t in BIG_FIVE])
    # All answers at the top of the scale: the reversed items cancel every trait to 0.
    np.testing.assert_allclose(tipi_traits([2] * 10), np.zeros(5))


def test_corpus_in_two_parts_loads_with_ratings_catalog_and_profiles(tmp_path, caplog):
    written = write_corpus(tmp_path, n_users=6, seed=3)
    assert detect_format(tmp_path)[0] == "ads"
    with caplog.at_level(logging.INFO):
        data = load(tmp_path)
    assert "not rated" in caplog.text  # zeros are counted, not silently dropped
    assert list(data.vocab.users) == [f"U{u:04d}" for u in range(1, 7)]
    n_rated = sum(int((r > 0).sum()) for r in written["ratings"].values())
    assert len(data) == n_rated and data.label is None and (data.timestamp == 0).all()
    frame = data.to_frame()
    # Every row is the rating written in the user's cell for that ad.
    for user, item, rating in frame[["user", "item", "rating"]].itertuples(index=False):
        category, position = int(item[1:3]), int(item[4:6])
        assert written["ratings"][user][category - 1, position - 1] == rating
    catalog = data.catalog.frame
    assert set(catalog["category"]) <= set(ADS_CATEGORIES)
    assert catalog.loc[data.vocab.encode_items(["A03_15"])[0], "category"] == "Baby Products"
    for u, user in enumerate(data.vocab.users):
        np.testing.assert_allclose(data.profiles.traits[u], tipi_traits(written["answers"][user]))
    demographics = data.profiles.demographics
    assert list(demographics["gender"][:2]) == ["F", "M"] and list(demographics["age"][:2]) == [21, 22]
    assert demographics["tastes"][0] == "hobbies=music|hobbies=sport" and demographics["tastes"][2] == ""
    assert demographics["hobbies"][2] == "reading"


def test_single_user_folder_and_rt_file(tmp_path):
    folder = write_user(tmp_path / "Corpus", "U0007", _ratings(4), ANSWERS,
                        pref={"Sports": "tennis,golf", "Music": "jazz"})
    assert detect_format(folder / "U0007-RT.csv")[0] == "ads"
    data = load(folder / "U0007-RT.csv")
    assert len(data) == 300 and (data.rating == 4).all()
    np.testing.assert_allclose(data.profiles.traits[0], [HAND_TRAITS[t] for t in BIG_FIVE])
    assert data.profiles.demographics["tastes"][0] == "sports=tennis|sports=golf|music=jazz"


def _rt(folder):
    return folder / f"{folder.name}-RT.csv"


def test_rating_out_of_range_names_line_and_category(tmp_path):
    ratings = _ratings()
    ratings[4, 2] = 7
    folder = write_user(tmp_path, "U0001", ratings, ANSWERS)
    with pytest.raises(DataFormatError) as error:
        load(tmp_path, format="ads")
    assert error.value.path == str(_rt(folder)) and error.value.line == 3 and error.value.field == "category 5"
    assert "ad 3" in str(error.value)


def test_wrong_number_of_cells_and_ratings(tmp_path):
    folder = write_user(tmp_path, "U0001", _ratings(), ANSWERS)
    lines = _rt(folder).read_text().splitlines()
    _rt(folder).write_text("\n".join(lines[:2] + [lines[2].rsplit(";", 1)[0]]) + "\n")
    with pytest.raises(DataFormatError, match="19 cells") as error:
        load(tmp_path, format="ads")
    assert error.value.line == 3
    _rt(folder).write_text("\n".join(lines[:2] + [lines[2].replace('"3,3,3,', '"3,3,', 1)]) + "\n")
    with pytest.raises(DataFormatError, match="14 ratings") as error:
        load(tmp_path, format="ads")
    assert (error.value.line, error.value.field) == (3, "category 1")


def test_malformed_tipi_answers(tmp_path):
    folder = write_user(tmp_path, "U0001", _ratings(), [*ANSWERS[:6], 3, *ANSWERS[7:]])
    with pytest.raises(DataFormatError, match="item 7") as error:
        load(tmp_path, format="ads")
    assert error.value.path == str(folder / "U0001-B5.csv") and error.value.line == 8
    assert error.value.field == "Answer"
    write_user(tmp_path, "U0001", _ratings(), ANSWERS[:9])
    with pytest.raises(DataFormatError, match="9 answers"):
        load(tmp_path, format="ads")
    (folder / "U0001-B5.csv").write_text("Question;Score\nx;1\n")
    with pytest.raises(DataFormatError, match="no 'Answer' column"):
        load(tmp_path, format="ads")


def test_malformed_demographics(tmp_path):
    folder = write_user(tmp_path, "U0001", _ratings(), ANSWERS)
    (folder / "U0001-INF.csv").write_text("Gender;Age\nF;25\nM;30\n")
    with pytest.raises(DataFormatError, match="one line of values") as error:
        load(tmp_path, format="ads")
    assert error.value.path == str(folder / "U0001-INF.csv") and error.value.line == 3
    (folder / "U0001-INF.csv").write_text("Gender;Age\nF;25;extra\n")
    with pytest.raises(DataFormatError, match="3 values for 2 columns") as error:
        load(tmp_path, format="ads")
    assert error.value.line == 2


def test_missing_traits_are_nan_and_logged(tmp_path, caplog):
    folder = write_user(tmp_path, "U0001", _ratings(), ANSWERS)
    write_user(tmp_path, "U0002", _ratings(5), ANSWERS)
    (folder / "U0001-B5.csv").unlink()
    with caplog.at_level(logging.WARNING):
        data = load(tmp_path)
    assert "1 users have no -B5.csv" in caplog.text
    assert np.isnan(data.profiles.traits[0]).all() and not np.isnan(data.profiles.traits[1]).any()


def test_empty_directory_is_not_ads(tmp_path):
    with pytest.raises(DataFormatError, match="no ADS user folder"):
        load(tmp_path, format="ads")
