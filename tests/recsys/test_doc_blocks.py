"""Generated doc blocks: only the text between the markers changes, and a missing marker changes nothing."""

from recsys.evaluation.doc_blocks import replace_block

DOC = "intro\n<!-- t:start -->\nold table\n<!-- t:end -->\nafter <!-- t:end -->\n"


def test_the_body_between_the_markers_is_replaced_and_the_rest_kept():
    assert replace_block(DOC, "<!-- t:start -->", "<!-- t:end -->", "\nnew\n") == \
        "intro\n<!-- t:start -->\nnew\n<!-- t:end -->\nafter <!-- t:end -->\n"


def test_rendering_twice_gives_the_same_text():
    once = replace_block(DOC, "<!-- t:start -->", "<!-- t:end -->", "\nnew\n")
    assert replace_block(once, "<!-- t:start -->", "<!-- t:end -->", "\nnew\n") == once


def test_a_missing_marker_gives_none():
    assert replace_block(DOC, "<!-- u:start -->", "<!-- t:end -->", "x") is None
    assert replace_block(DOC, "<!-- t:start -->", "<!-- u:end -->", "x") is None
    # an end marker only before the start does not count
    assert replace_block("<!-- t:end -->\n<!-- t:start -->\n", "<!-- t:start -->", "<!-- t:end -->", "x") is None
