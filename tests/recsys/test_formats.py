import gzip
import json
import logging

import numpy as np
import pandas as pd
import pytest

from recsys.data.formats import detect_format, load, load_presplit, read_table
from recsys.data.interactions import IdVocab, InteractionData
from recsys.data.native import write_native
from recsys.errors import DataFormatError, UserInputError


def _write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def _outside(data):
    """Rows as (user, item, timestamp[, rating]) tuples of outside ids, for exact comparison."""
    frame = data.to_frame()
    return [tuple(row) for row in frame.itertuples(index=False)]


# generic tables --------------------------------------------------------------------------
def test_table_with_mapping_iso_times_and_leading_zeros(tmp_path):
    path = _write(tmp_path / "log.csv", "customer,sku,when,stars\n"
                  "007,A1,2021-03-04T05:06:07Z,4.5\n"
                  "8,A2,1600000000,3\n\n"
                  "007,A2,2021-03-04,1\n")
    data = load(path, format="table", columns={"user": "customer", "item": "sku", "timestamp": "when",
                                               "rating": "stars"})
    assert list(data.vocab.users) == ["007", "8"] and list(data.vocab.items) == ["A1", "A2"]
    np.testing.assert_array_equal(data.user, [0, 1, 0])
    np.testing.assert_array_equal(data.item, [0, 1, 1])
    np.testing.assert_array_equal(data.timestamp, [1614834367, 1600000000, 1614816000])
    np.testing.assert_array_equal(data.rating, np.array([4.5, 3, 1], dtype=np.float32))
    assert data.label is None and data.catalog is None


@pytest.mark.parametrize("suffix", [".tsv", ".parquet"])
def test_table_aliases_tsv_and_parquet(tmp_path, suffix):
    frame = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i9", "i1"], "ts": [10, 20], "click": [1, 0]})
    path = tmp_path / f"data{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="\t", index=False)
    data = load(path)  # auto -> table, columns found by alias
    assert _outside(data) == [("u1", "i9", 10, 1.0), ("u2", "i1", 20, 0.0)]


def test_headerless_table_with_names(tmp_path):
    path = _write(tmp_path / "log.txt", "u1 i1 5 10\nu2 i2 4 11\n")
    data = load(path, format="table", sep=" ", names=["user", "item", "stars", "t"],
                columns={"rating": "stars", "timestamp": "t"})
    assert _outside(data) == [("u1", "i1", 10, 5.0), ("u2", "i2", 11, 4.0)]


def test_table_without_timestamp_and_with_side_tables(tmp_path, caplog):
    path = _write(tmp_path / "x.csv", "user,item\nu1,b\nu2,a\n")
    items = _write(tmp_path / "items.csv", "item,title,category,price\na,Apple,fruit,1.5\nb,Bread,bakery,2\n"
                   "c,Cheese,dairy,7\n")
    users = _write(tmp_path / "users.csv", "user,openness,age\nu1,0.25,30\n")
    with caplog.at_level(logging.WARNING):
        data = load(path, format="table", items=items, users=users)
    assert "no timestamp column" in caplog.text and "1 items in the side file have no interactions" in caplog.text
    np.testing.assert_array_equal(data.timestamp, [0, 0])
    assert list(data.catalog.titles) == ["Bread", "Apple"] and list(data.catalog.frame["price"]) == [2.0, 1.5]
    assert data.profiles.traits[0, 0] == pytest.approx(0.25) and np.isnan(data.profiles.traits[1]).all()
    assert list(data.profiles.demographics["age"].fillna(-1)) == [30, -1]
    kept = load(path, format="table", items=items, unused_side="keep")
    assert list(kept.vocab.items) == ["b", "a", "c"] and list(kept.catalog.titles) == ["Bread", "Apple", "Cheese"]


# MovieLens ----------------------------------------------------------------------------------
U_ITEM_FLAGS = {"10": [3, 4, 5], "20": [1, 2, 16]}  # Animation, Children's, Comedy / Action, Adventure, Thriller


def _u_item_line(movie, title):
    flags = ["0"] * 19
    for k in U_ITEM_FLAGS.get(movie, []):
        flags[k] = "1"
    return f"{movie}|{title}|01-Jan-1995||http://imdb|" + "|".join(flags)


def test_movielens_100k_directory(tmp_path):
    _write(tmp_path / "u.data", "1\t10\t5\t881250949\n2\t20\t3\t891717742\n1\t20\t4\t878887116\n")
    _write(tmp_path / "u.item", "\n".join([_u_item_line("10", "Toy Story (1995)"),
                                           _u_item_line("20", 'GoldenEye "007" (1995)'),
                                           _u_item_line("30", "Caf\xe9 (1995)")]) + "\n", encoding="latin-1")
    _write(tmp_path / "u.user", "1|24|M|technician|85711\n2|53|F|other|00501\n")
    assert detect_format(tmp_path)[0] == "movielens"
    data = load(tmp_path)
    assert _outside(data) == [("1", "10", 881250949, 5.0), ("2", "20", 891717742, 3.0), ("1", "20", 878887116, 4.0)]
    assert list(data.catalog.titles) == ["Toy Story (1995)", 'GoldenEye "007" (1995)']
    assert list(data.catalog.categories) == ["Animation", "Action"]
    assert list(data.catalog.frame["genres"]) == ["Animation|Children's|Comedy", "Action|Adventure|Thriller"]
    assert list(data.profiles.demographics["zip_code"]) == ["85711", "00501"]
    assert list(data.profiles.demographics["gender"]) == ["M", "F"]
    assert np.isnan(data.profiles.traits).all()


def test_movielens_1m_dat_files_latin1(tmp_path):
    ratings = _write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    _write(tmp_path / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
           "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
           "5::Ca\xf1on (1999)::Comedy\n", encoding="latin-1")
    _write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    assert detect_format(ratings) == ("movielens", "file name ratings.dat")
    data = load(ratings, unused_side="keep")
    assert _outside(data) == [("1", "1193", 978300760, 5.0), ("1", "661", 978302109, 3.0),
                              ("2", "1193", 978298413, 4.0)]
    assert list(data.vocab.items) == ["1193", "661", "5"]
    assert list(data.catalog.titles)[2] == "Ca\xf1on (1999)"
    assert list(data.catalog.categories) == ["Drama", "Animation", "Comedy"]
    assert list(data.profiles.demographics["age"]) == [1, 56]


def test_movielens_ratings_csv(tmp_path):
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n")
    _write(tmp_path / "movies.csv", 'movieId,title,genres\n1,"Toy Story, The (1995)",Adventure|Animation\n'
           "3,Grumpier Old Men (1995),(no genres listed)\n")
    assert detect_format(tmp_path / "ratings.csv") == ("movielens", "header userId,movieId,...")
    data = load(tmp_path / "ratings.csv")
    assert _outside(data) == [("1", "1", 964982703, 4.0), ("1", "3", 964981247, 4.5)]
    assert list(data.catalog.titles) == ["Toy Story, The (1995)", "Grumpier Old Men (1995)"]
    assert list(data.catalog.categories) == ["Adventure", ""]


# RecBole ------------------------------------------------------------------------------------
def test_recbole_atomic_files(tmp_path):
    root = tmp_path / "ml-mini"
    _write(root / "ml-mini.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
           "196\t242\t3\t881250949\n186\t302\t3\t891717742.7\n")
    _write(root / "ml-mini.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
           "242\tKolya\t1996\tComedy\n302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n")
    _write(root / "ml-mini.user", "user_id:token\tage:token\tgender:token\theight:float\n"
           "196\t49\tM\t1.8\n186\t39\tF\t\n")
    assert detect_format(root) == ("recbole", "RecBole atomic file ml-mini.inter")
    data = load(root)
    assert _outside(data) == [("196", "242", 881250949, 3.0), ("186", "302", 891717742, 3.0)]
    assert list(data.catalog.titles) == ["Kolya", "L.A. Confidential"]
    assert list(data.catalog.categories) == ["Comedy", "Crime"]
    assert list(data.catalog.frame["class"]) == ["Comedy", "Crime Film-Noir Mystery Thriller"]
    assert list(data.catalog.frame["release_year"]) == ["1996", "1997"]
    height = data.profiles.demographics["height"].to_numpy()
    assert height[0] == pytest.approx(1.8) and np.isnan(height[1])


def test_recbole_field_mapping_and_label(tmp_path):
    path = _write(tmp_path / "x.inter", "uid:token\tiid:token\ttime:float\tlabel:float\nu\ti\t5\t1\nu\tj\t6\t0\n")
    assert detect_format(path)[0] == "recbole"
    data = load(path, columns={"user": "uid", "item": "iid", "timestamp": "time"})
    assert _outside(data) == [("u", "i", 5, 1.0), ("u", "j", 6, 0.0)]


# Amazon -------------------------------------------------------------------------------------
def _gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def test_amazon_reviews_and_2018_meta_gz(tmp_path):
    reviews = [
        {"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1252800000, "reviewText": "Great",
         "summary": "ok", "reviewTime": "09 13, 2009"},
        {"reviewerID": "A2", "asin": "B02", "overall": 2.0, "reviewTime": "01 02, 2010"},
    ]
    _gz(tmp_path / "Beauty_5.json.gz", [json.dumps(r) for r in reviews])
    meta = [
        {"asin": "B01", "title": "Soap", "description": ["Gentle", "soap"], "category": ["Beauty", "Skin Care",
                                                                                       "Soap"], "brand": "Acme"},
        {"asin": "B01", "title": "Soap again"},
        {"asin": "B02", "title": "Comb", "category": ["Beauty"], "price": "$3.99"},
    ]
    _gz(tmp_path / "meta_Beauty.json.gz", [json.dumps(m) for m in meta])
    assert detect_format(tmp_path)[0] == "amazon"
    data = load(tmp_path)
    assert _outside(data) == [("A1", "B01", 1252800000, 5.0), ("A2", "B02", 1262390400, 2.0)]
    frame = data.catalog.frame
    assert list(frame["title"]) == ["Soap", "Comb"] and list(frame["text"]) == ["Gentle soap", ""]
    assert list(frame["category"]) == ["Skin Care", "Beauty"]
    assert list(frame["categories"]) == ["Beauty > Skin Care > Soap", "Beauty"]
    assert list(frame["brand"]) == ["Acme", ""] and list(frame["price"]) == ["", "$3.99"]


def test_amazon_2014_python_literal_meta(tmp_path):
    path = _write(tmp_path / "reviews_Toys.json", json.dumps(
        {"reviewerID": "R", "asin": "X", "overall": 4, "unixReviewTime": 1}) + "\n")
    _write(tmp_path / "meta_Toys.json", "{'asin': 'X', 'title': 'Kite', 'categories': [['Toys', 'Outdoor']]}\n")
    data = load(path)
    assert list(data.catalog.titles) == ["Kite"] and list(data.catalog.categories) == ["Outdoor"]
    assert load(path, meta=False).catalog is None


# native through load, and auto-detect --------------------------------------------------------
def test_load_prefengine_and_detect(tmp_path):
    data = InteractionData([0, 1], [1, 0], [5, 6], IdVocab(["a", "b"], ["x", "y"]))
    write_native(tmp_path / "native", data, file_format="csv")
    assert detect_format(tmp_path / "native")[0] == "prefengine"
    back = load(tmp_path / "native" / "dataset.json")
    assert _outside(back) == _outside(data)
    assert _outside(load(tmp_path / "native", format="native")) == _outside(data)
    with pytest.raises(UserInputError, match="fixed columns"):
        load(tmp_path / "native", columns={"user": "u"})
    with pytest.raises(UserInputError, match="unknown data format"):
        load(tmp_path / "native", format="excel")
    with pytest.raises(UserInputError, match="takes no option"):
        load(tmp_path / "native", meta="x")


# pre-split ----------------------------------------------------------------------------------
def test_presplit_one_vocabulary_from_train(tmp_path, caplog):
    train = _write(tmp_path / "train.csv", "user,item,timestamp\nu1,a,1\nu2,b,2\nu1,c,3\n")
    valid = _write(tmp_path / "valid.csv", "user,item,timestamp\nu2,a,4\n")
    test = _write(tmp_path / "test.csv", "user,item,timestamp\nu1,b,5\nu1,a,6\n")
    with caplog.at_level(logging.WARNING):
        split = load_presplit(train, valid, test)
    assert "1 test rows repeat a (user, item) pair of train" in caplog.text
    assert split.valid.vocab is split.train.vocab and split.test.vocab is split.train.vocab
    np.testing.assert_array_equal(split.test.user, [0, 0])
    np.testing.assert_array_equal(split.test.item, [1, 0])
    np.testing.assert_array_equal(split.valid.timestamp, [4])


def test_presplit_unknown_ids_name_file_line_field(tmp_path):
    train = _write(tmp_path / "train.csv", "uid,iid,t\nu1,a,1\nu2,b,2\n")
    valid = _write(tmp_path / "valid.csv", "uid,iid,t\nu2,a,4\n\nu1,zz,5\n")
    test = _write(tmp_path / "test.csv", "uid,iid,t\nu9,a,5\n")
    columns = {"user": "uid", "item": "iid", "timestamp": "t"}
    with pytest.raises(DataFormatError) as info:
        load_presplit(train, valid, test, columns=columns)
    error = info.value
    assert (error.path, error.line, error.field) == (str(valid), 4, "iid") and "'zz'" in str(error)
    _write(valid, "uid,iid,t\nu2,a,4\n")
    with pytest.raises(DataFormatError) as info:
        load_presplit(train, valid, test, columns=columns)
    assert (info.value.path, info.value.line, info.value.field) == (str(test), 2, "uid")


def test_presplit_movielens_100k_base_test_without_valid(tmp_path):
    base = _write(tmp_path / "u1.base", "1\t10\t5\t100\n2\t20\t3\t200\n")
    test = _write(tmp_path / "u1.test", "2\t10\t4\t300\n")
    assert detect_format(base)[0] == "movielens"
    split = load_presplit(base, None, test)
    assert len(split.valid) == 0 and split.valid.vocab is split.train.vocab
    assert _outside(split.test) == [("2", "10", 300, 4.0)]


def test_presplit_recbole_benchmark_files(tmp_path):
    header = "user_id:token\titem_id:token\ttimestamp:float\n"
    paths = [_write(tmp_path / f"d.{part}.inter", header + body)
             for part, body in (("train", "1\t1\t1\n2\t2\t2\n"), ("valid", "1\t2\t3\n"), ("test", "2\t1\t4\n"))]
    split = load_presplit(*paths)
    assert split.describe() == "train 2 / valid 1 / test 1"
    np.testing.assert_array_equal(split.test.item, [0])


# bad input: every case names the file, line and field ----------------------------------------
BAD_CASES = [
    ("missing column", "t.csv", "user,item,timestamp\nu,i,1\n", {"columns": {"user": "user", "item": "item",
                                                                           "rating": "stars"}}, None, "stars"),
    ("unparsable rating", "t.csv", "user,item,timestamp,rating\nu,i,1,4\nu,j,2,five\n", {}, 3, "rating"),
    ("unparsable timestamp", "t.csv", "user,item,timestamp\nu,i,1\n\nu,j,next week\n", {}, 4, "timestamp"),
    ("empty timestamp", "t.csv", "user,item,timestamp\nu,i,\n", {}, 2, "timestamp"),
    ("empty id", "t.csv", "user,item,timestamp\nu,i,1\n,j,2\n", {}, 3, "user"),
    ("u.data short line", "u.data", "1\t2\t3\t4\n1\t2\t3\n", {}, 2, "timestamp"),
    ("ml-1m bad rating", "ratings.dat", "1::2::3::4\n1::2::x::4\n", {}, 2, "Rating"),
    ("recbole bad header", "a.inter", "user_id:token\titem_id\nu\ti\n", {"format": "recbole"}, 1, "item_id"),
    ("recbole unknown type", "a.inter", "user_id:token\titem_id:int\nu\ti\n", {"format": "recbole"}, 1,
     "item_id:int"),
    ("recbole bad float", "a.inter", "user_id:token\titem_id:token\trating:float\nu\ti\tgood\n", {}, 2, "rating"),
    ("amazon malformed json", "r.json", '{"reviewerID": "A", "asin": "B", "overall": 1, "unixReviewTime": 2}\n'
     '{"reviewerID": "A", "asin": \n', {}, 2, None),
    ("amazon missing field", "r.json", '{"reviewerID": "A", "overall": 1, "unixReviewTime": 2}\n', {}, 1, "asin"),
    ("amazon bad rating", "r.json", '{"reviewerID": "A", "asin": "B", "overall": "n/a", "unixReviewTime": 2}\n',
     {}, 1, "overall"),
]


@pytest.mark.parametrize("case, name, text, kwargs, line, field", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_names_file_line_field(tmp_path, case, name, text, kwargs, line, field):
    path = _write(tmp_path / name, text)
    with pytest.raises(DataFormatError) as info:
        load(path, **kwargs)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), line, field), str(info.value)


def test_parquet_errors_name_the_row(tmp_path):
    path = tmp_path / "x.parquet"
    pd.DataFrame({"user": ["a", "b", "c"], "item": ["i", "j", "k"], "timestamp": ["1", "2", "soon"]}).to_parquet(path)
    with pytest.raises(DataFormatError, match=r"\(row 3\)") as info:
        load(path)
    assert (info.value.line, info.value.field) == (3, "timestamp")


def test_empty_and_header_only_files(tmp_path):
    for name in ("e.csv", "u.data", "e.inter", "e.json"):
        path = _write(tmp_path / name, "")
        with pytest.raises(DataFormatError, match="empty file") as info:
            load(path)
        assert info.value.path == str(path)
    with pytest.raises(DataFormatError, match="no data rows"):
        load(_write(tmp_path / "h.csv", "user,item,timestamp\n"))
    with pytest.raises(DataFormatError, match="no such file"):
        load(tmp_path / "missing.csv", format="table")
    with pytest.raises(DataFormatError, match="cannot tell the format"):
        load(_write(tmp_path / "dir" / "notes.txt", "hello").parent)


def test_read_table(tmp_path):
    frame = read_table(_write(tmp_path / "recs.tsv", "user\titem\tscore\n01\t002\t0.5\n"))
    assert list(frame["user"]) == ["01"] and list(frame["item"]) == ["002"] and frame["score"][0] == 0.5
    with pytest.raises(DataFormatError) as info:
        read_table(_write(tmp_path / "bad.csv", "user,item\na,b\na,b,c\n"))
    assert info.value.line == 3
    with pytest.raises(DataFormatError, match="Parquet"):
        read_table(_write(tmp_path / "bad.parquet", "not parquet"))
