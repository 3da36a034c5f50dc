"""The certified float16 scan returns the exact float32 top-k, or declines."""

import faiss
import numpy as np

from serving.halfscan import CertifiedBatchScan, CertifiedHalfScan, exact_scores


def reference(vectors, query, k, allowed=None):
    """float32 scores of every allowed item, best first, ties by the lower id (the scan's own rule)."""
    ids = np.arange(len(vectors)) if allowed is None else np.flatnonzero(allowed)
    scores = vectors[ids] @ query
    order = np.lexsort((ids, -scores))[:k]
    return ids[order], scores[order]


def selector_params(allowed):
    bitmap = np.packbits(allowed, bitorder="little")
    return faiss.SearchParameters(sel=faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))), bitmap


def test_certified_answers_equal_the_exact_float32_top_k():
    rng = np.random.default_rng(0)
    vectors = (rng.normal(size=(3000, 24)) * rng.uniform(0.1, 3.0, size=(3000, 1))).astype(np.float32)
    scan = CertifiedHalfScan(vectors)
    assert scan.usable
    certified = 0
    for _ in range(300):
        query = (rng.normal(size=24) * rng.uniform(0.01, 10)).astype(np.float32)
        k = int(rng.integers(1, 60))
        answer = scan.search(query[None, :], k, len(vectors), None)
        if answer is None:
            continue
        certified += 1
        items, scores = reference(vectors, query, k)
        np.testing.assert_array_equal(answer[0], items)
        np.testing.assert_allclose(answer[1], scores, rtol=1e-6)  # BLAS may sum a subset in another order
        # and the float64 ranking agrees up to float32 rounding
        exact64 = np.sort(vectors.astype(np.float64) @ query.astype(np.float64))[::-1][:k]
        np.testing.assert_allclose(np.sort(answer[1])[::-1], exact64, rtol=1e-5, atol=1e-5)
    assert certified >= 280  # the bound is tight enough to be useful, not only safe


def test_filters_are_honoured_and_small_allowed_sets_are_returned_whole():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2000, 16)).astype(np.float32)
    scan = CertifiedHalfScan(vectors)
    for size in (3, 40, 900):
        allowed = np.zeros(len(vectors), dtype=bool)
        allowed[rng.choice(len(vectors), size=size, replace=False)] = True
        query = rng.normal(size=16).astype(np.float32)
        params, _bitmap = selector_params(allowed)
        k = min(10, size)
        answer = scan.search(query[None, :], k, size, params)
        assert answer is not None
        np.testing.assert_array_equal(answer[0], reference(vectors, query, k, allowed)[0])


def test_a_crowd_of_near_ties_is_not_certified():
    rng = np.random.default_rng(2)
    base = rng.normal(size=16).astype(np.float32)
    # 500 items whose scores differ by far less than float16 can tell apart.
    vectors = (base + 1e-6 * rng.normal(size=(500, 16))).astype(np.float32)
    scan = CertifiedHalfScan(vectors)
    assert scan.search(base[None, :], 5, len(vectors), None) is None


def test_values_beyond_float16_disable_the_scan():
    vectors = np.ones((10, 4), dtype=np.float32)
    vectors[3, 1] = 1e6
    assert not CertifiedHalfScan(vectors).usable


def test_exact_scores_do_not_depend_on_which_other_items_are_scored():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(700, 24)).astype(np.float32)  # 24: not a power of two, so padding is exercised
    query = rng.normal(size=24).astype(np.float32)
    together = exact_scores(vectors, np.arange(700), query)
    alone = np.array([exact_scores(vectors, np.array([i]), query)[0] for i in range(700)])
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_allclose(together, vectors.astype(np.float64) @ query, rtol=1e-5, atol=1e-5)


def test_the_batch_scan_equals_the_exact_top_k_of_each_query_under_its_own_exclusions():
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(3000, 16)).astype(np.float32)
    vectors[2000:2300] = vectors[:300]  # exact ties, broken by the lower index
    index = faiss.IndexFlatIP(16)
    index.add(vectors)
    scan = CertifiedBatchScan(index, vectors)
    queries = rng.normal(size=(40, 16)).astype(np.float32)
    ks = [int(k) for k in rng.integers(1, 80, size=40)]
    allowed = []
    for row in range(40):
        mask = None
        if row % 3:
            mask = np.ones(3000, dtype=bool)
            mask[rng.integers(0, 3000, size=rng.integers(1, 200))] = False
            mask[reference(vectors, queries[row], 3)[0]] = False  # always exclude some of the best
        allowed.append(mask)
    answers = scan.search(queries, ks, allowed)
    assert sum(answer is not None for answer in answers) >= 38
    for query, k, mask, answer in zip(queries, ks, allowed, answers):
        if answer is None:
            continue
        items, scores = reference(vectors, query, k, mask)
        np.testing.assert_array_equal(answer[0], items)
        np.testing.assert_allclose(answer[1], scores, rtol=1e-5, atol=1e-6)


def test_the_batch_scan_declines_a_crowd_of_near_ties():
    rng = np.random.default_rng(5)
    base = rng.normal(size=16).astype(np.float32)
    vectors = (base + 1e-7 * rng.normal(size=(500, 16))).astype(np.float32)
    index = faiss.IndexFlatIP(16)
    index.add(vectors)
    answers = CertifiedBatchScan(index, vectors).search(np.stack([base, base]), [5, 5], [None, None])
    assert answers == [None, None]
