"""Raw readers: both formats, and one clear error (file + line) for every kind of bad input."""

import numpy as np
import pytest

from srsan_np.cli import main
from srsan_np.data import readers
from srsan_np.data.readers import read_diginetica, read_yoochoose
from srsan_np.data.store import DataError

HEADER = "session_id;user_id;item_id;timeframe;eventdate\n"


def write(tmp_path, text, name="log.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_diginetica_both_headers_and_utc_dates(tmp_path):
    body = "1;NA;10;5;2016-05-09\n1;;11;3;2016-05-09\n2;7;10;1;2016-05-10\n"
    for header in (HEADER, "sessionId;userId;itemId;timeframe;eventdate\n"):
        c = read_diginetica(write(tmp_path, header + body))
        assert c.session.tolist() == [1, 1, 2] and c.item.tolist() == [10, 11, 10]
        assert c.timeframe.tolist() == [5, 3, 1]
        assert c.date.tolist() == [1462752000, 1462752000, 1462838400]   # 00:00 UTC


def test_yoochoose_with_and_without_header(tmp_path):
    body = "1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:54:09.868Z,214536500,S\n"
    for header in ("", "session_id,timestamp,item_id,category\n"):
        c = read_yoochoose(write(tmp_path, header + body, "clicks.dat"))
        assert c.session.tolist() == [1, 1] and c.item.tolist() == [214536502, 214536500]
        assert c.date.tolist() == [1396867869, 1396868049] and c.timeframe is None


def test_blocks_boundaries_blank_lines_and_crlf_do_not_matter(tmp_path, monkeypatch):
    rows = [f"{s};NA;{s * 7 % 13};{s};2016-05-{1 + s % 9:02d}" for s in range(200)]
    expected = read_diginetica(write(tmp_path, HEADER + "\n".join(rows) + "\n"))
    monkeypatch.setattr(readers, "BLOCK_BYTES", 37)   # many blocks, cut mid-line
    messy = HEADER.replace("\n", "\r\n") + "\r\n".join(rows[:50]) + "\r\n\r\n" + "\n".join(rows[50:])
    got = read_diginetica(write(tmp_path, messy))
    for a, b in zip(got[:4], expected[:4]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    (HEADER, "empty file"),
    ("session_id;user_id;item_id;eventdate\n1;NA;2;2016-01-01\n", "line 1: missing column 'timeframe'"),
    (HEADER + "1;NA;5;1;2016-01-01\n1;NA;x5;2;2016-01-01\n", "line 3: item id 'x5' is not an integer"),
    (HEADER + "1;NA;5;1;2016-01-01\n1.5;NA;5;2;2016-01-01\n", "line 3: session id '1.5' is not an integer"),
    (HEADER + "1;NA;5;1;2016-01-01\n1;NA;5;2;2016-13-01\n", "line 3: eventdate '2016-13-01' is not a date"),
    (HEADER + "1;NA;5;1;2016-01-01\n1;NA;5;2\n", "line 3: expected 5 ';'-separated fields, found 4"),
])
def test_diginetica_errors_name_file_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message) as e:
        read_diginetica(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("1,2014-04-07T10:51:09.277Z,214536502,0\n2,2014-04-07 10:51:09,3,0\n", "line 2: timestamp"),
    ("1,2014-04-07T10:51:09.277Z,214536502,0\n2,2014-02-30T10:51:09Z,3,0\n", "line 2: timestamp"),
    ("session_id,timestamp,item_id,category\n1,2014-04-07T10:51:09Z,abc,0\n", "line 2: item id 'abc'"),
    ("session_id,item_id,category\n1,5,0\n", "line 1: missing column 'timestamp'"),
])
def test_yoochoose_errors_name_file_and_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_yoochoose(write(tmp_path, text, "clicks.dat"))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_diginetica(tmp_path / "absent.csv")


def test_cli_bad_input_exit_2_message_and_no_output(tmp_path, capsys):
    path = write(tmp_path, HEADER + "1;NA;5;1;2016-01-01\n1;NA;5;2;yesterday\n")
    out = tmp_path / "prepared"
    status = main(["preprocess", "--dataset", "diginetica", "--input", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert f"{path}: line 3: eventdate 'yesterday'" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [path]      # no output dir, no temp left behind


def test_cli_nothing_left_after_filtering(tmp_path, capsys):
    path = write(tmp_path, HEADER + "".join(f"{s};NA;{s};1;2016-01-01\n" for s in range(1, 9)))
    status = main(["preprocess", "--dataset", "diginetica", "--input", str(path), "--out", str(tmp_path / "o")])
    assert status == 2 and "no session left after filtering" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
