"""Compiled per-sample SGD for implicit-feedback matrix factorization: BPR, BPO and NBPO.

Autograd paths (TorchRec, fbgemm, plain `nn.Embedding`) run 4-8x slower than `implicit`'s
Cython BPR on CPU (see FACTS.md); a numba loop that updates one (user, positive, negative)
triple at a time passes it. The kernel writes into numpy
views of the torch tables (`tensor.detach().numpy()` shares memory), so a TorchRec module can
keep owning its weights while this file trains them.

One *sample* is one triple (u, i, j): a training positive (u, i) drawn uniformly with
replacement (bootstrap sampling, as in Rendle et al.'s LearnBPR and in `implicit`) and a negative
j that is never one of u's training positives. An epoch draws `len(users)` positives and
`n_neg` negatives for each, and makes one SGD step per triple. The per-triple loss (minimised)
with x = U_u.V, gamma = P_u.Q, rho = sigma(gamma), and sg() = stop-gradient:

    BPR    -log sigma(x_ui - x_uj)
    BPO    -log sigma(x_ui) - log sigma(-x_uj)
    NBPO   -[sg(1-rho_ui) log sigma(x_ui) + sg(sigma(x_ui)) log(1-rho_ui)]
           -[log sigma(-x_uj) + sg(rho_uj) log sigma(x_uj) + sg(sigma(x_uj)) log rho_uj]

plus (reg/2)(|U_u|^2 + |V_i|^2 + |V_j|^2) and, for NBPO, (flip_reg/2)(|P_u|^2 + |Q_i|^2 + |Q_j|^2).
Each step reads every touched row before writing any, so a step equals one autograd SGD step
on that loss. The returned epoch loss is the mean data term (without L2), taken before each step.

Negatives are uniform over the items, or drawn from per-item weights (e.g. popularity) through
Walker's alias table in O(1); a draw that hits one of u's positives is redrawn. NBPO's flip
factors may take their own learning rate (`flip_lr`).

Threads, and why results do not depend on them. The default schedule is stratified, as in
DSGD (Gemulla et al., KDD 2011): each epoch splits users and items into T random blocks of equal
size (a fresh permutation per epoch, drawn from the epoch's seed), and the positives into the
T x T strata (user block a, item block b). The epoch runs T sub-epochs; sub-epoch s trains the
strata (a, (a + s) mod T) for every a. Within a stratum, positives are drawn uniformly with
replacement, as many draws as the stratum holds positives, and every negative is drawn inside
item block b. So the strata of one sub-epoch touch disjoint rows of every table, and the threads
(Python threads over nogil numba code, one stratum per task) never share a row: each stratum has
its own random stream from (seed, stratum), and the tables after an epoch are the same bit for
bit on 1, 2 or 16 threads, in any order of completion. T depends only on the catalog (up to 4
blocks of at least 64 items), never on the thread count.

Why the sampling stays unbiased. Over an epoch every positive is still drawn once in expectation
(each stratum draws as many as it holds). A negative is drawn from block(i) minus u's positives;
since the item permutation is uniform and independent of everything else, all items that are not
u's positives are exchangeable under it, so the negative for (u, i) is uniform over u's
non-positives, exactly as in the unstratified sampler. With item weights the draw is the global
alias table restricted to the block, proportional to the weights within it; averaged over the
permutations it matches the weighted draw up to the fluctuation of the blocks' total weight.
What changes is the order of the steps (stratum by stratum), which is DSGD's, with its
convergence guarantee. A user whose positives fill a whole block has no negative there; draws of
that user in that stratum make no step (with >= 64 items per block, only users who hold most of
the catalog).

`schedule="hogwild"` is the older alternative: positives split into fixed-size chunks, each with its
own random stream from (seed, chunk), threads over shares of the chunks writing shared rows
without locks. The draws never depend on the thread count and one thread gives bit-equal
results, but with more threads updates to shared rows race and the weights differ from run to
run. It is kept as an opt-in; its speed beside the default is in docs/benchmarks.md.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
from numba import njit

from recsys.errors import UserInputError

OBJECTIVES = ("bpr", "bpo", "nbpo")
SCHEDULES = ("stratified", "hogwild")
# Blocks of the stratified schedule: enough strata per sub-epoch to keep 2-4 threads busy; a block
# holds at least _MIN_BLOCK_ITEMS items so that negatives drawn inside it are rarely rejected.
_BLOCKS = 4
_MIN_BLOCK_ITEMS = 64
_BPR, _BPO, _NBPO = 0, 1, 2
# Positives per random stream; fixed so that the draws do not depend on the thread count.
_CHUNK = 2048
# Triples are drawn a group at a time and their table rows loaded before any step, so the cache
# misses of a group overlap instead of stalling each sample in turn (about +70% samples/s on the
# MovieLens-shaped matrix). The steps themselves still run one triple after another.
_GROUP = 16

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
_TWO_POW_M32 = 1.0 / 4294967296.0


# --- random numbers: splitmix64 (fast, passes BigCrush, state is a single uint64) ---------------
@njit(cache=True)
def _mix64(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True)
def _next(state):
    state = state + _GOLDEN
    return state, _mix64(state)


@njit(cache=True)
def _below(z, n):
    """An integer in [0, n) from 64 random bits (Lemire's multiply-shift; n < 2**32)."""
    return np.int64(((z >> _S32) * np.uint64(n)) >> _S32)


@njit(cache=True)
def _stream(seed, chunk):
    return _mix64(np.uint64(seed) + _mix64(np.uint64(chunk + 1) * _GOLDEN))


# --- negative sampling -----------------------------------------------------------------------
@njit(cache=True)
def _contains(indices, lo, hi, item):
    """Whether sorted `indices[lo:hi]` holds `item` (binary search)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        value = indices[mid]
        if value == item:
            return True
        if value < item:
            lo = mid + 1
        else:
            hi = mid
    return False


@njit(cache=True)
def _draw_negative(state, user, indptr, indices, n_items, alias_prob, alias_item):
    """An item that is not one of `user`'s training positives (rejection sampling).

    Uniform when the alias table is empty, else from Walker's alias table: the high 32 random
    bits pick a column, the low 32 bits toss its coin.
    """
    lo, hi = indptr[user], indptr[user + 1]
    while True:
        state, z = _next(state)
        item = _below(z, n_items)
        if alias_prob.shape[0] != 0 and np.float64(z & _LOW32) * _TWO_POW_M32 >= alias_prob[item]:
            item = np.int64(alias_item[item])
        if not _contains(indices, lo, hi, item):
            return state, item


@njit(cache=True)
def _alias_table(prob):
    """Walker/Vose alias table for `prob` (sums to 1): column k keeps k with alias_prob[k], else alias_item[k]."""
    n = prob.shape[0]
    scaled = prob * n
    alias_prob = np.ones(n)
    alias_item = np.arange(n).astype(np.int32)
    small = np.empty(n, dtype=np.int64)
    large = np.empty(n, dtype=np.int64)
    n_small = n_large = 0
    for k in range(n):
        if scaled[k] < 1.0:
            small[n_small] = k
            n_small += 1
        else:
            large[n_large] = k
            n_large += 1
    while n_small > 0 and n_large > 0:
        n_small -= 1
        n_large -= 1
        lo, hi = small[n_small], large[n_large]
        alias_prob[lo] = scaled[lo]
        alias_item[lo] = hi
        scaled[hi] = scaled[hi] + scaled[lo] - 1.0
        if scaled[hi] < 1.0:
            small[n_small] = hi
            n_small += 1
        else:
            large[n_large] = hi
            n_large += 1
    return alias_prob, alias_item  # columns left on either stack keep probability 1 (rounding)


# --- the objectives --------------------------------------------------------------------------
@njit(cache=True)
def _log_one_to_two(f):
    """log(f) for f in [1, 2], within 1.1e-9: 2 atanh(y) as a series in y = (f-1)/(f+1) <= 1/3.

    The libm log it replaces cost NBPO (four logs per triple) about 10% of its samples/s.
    """
    y = (f - 1.0) / (f + 1.0)
    y2 = y * y
    series = 1.0 / 15.0
    for odd in (13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0):
        series = series * y2 + 1.0 / odd
    return 2.0 * y * series


@njit(cache=True)
def _logistic(t):
    """(sigma(t), -log sigma(t)) from one exp; -log sigma(-t) is then -log sigma(t) + t."""
    e = np.exp(-abs(t))
    neg_log = _log_one_to_two(1.0 + e)
    if t >= 0.0:
        return 1.0 / (1.0 + e), neg_log
    return e / (1.0 + e), neg_log - t


@njit(cache=True)
def _dots(A, B, a, b1, b2):
    """(A_a . B_b1, A_a . B_b2) in one pass over the row of A."""
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    for f in range(A.shape[1]):
        w = A[a, f]
        s1 += w * B[b1, f]
        s2 += w * B[b2, f]
    return np.float64(s1), np.float64(s2)


@njit(cache=True)
def _ascend(A, B, a, b1, b2, g1, g2, lr, reg):
    """One SGD step on rows A_a, B_b1, B_b2 given d(objective)/d(A_a.B_b1) = g1 and .../d(A_a.B_b2) = g2.

    The objective is maximised; the L2 term (reg/2)|row|^2 is subtracted. All three rows are
    read before any is written (b1 != b2), so this is the exact gradient step.
    """
    g1 = np.float32(g1)
    g2 = np.float32(g2)
    for f in range(A.shape[1]):
        w = A[a, f]
        h1 = B[b1, f]
        h2 = B[b2, f]
        A[a, f] = w + lr * (g1 * h1 + g2 * h2 - reg * w)
        B[b1, f] = h1 + lr * (g1 * w - reg * h1)
        B[b2, f] = h2 + lr * (g2 * w - reg * h2)


@njit(cache=True)
def _bpr_step(U, V, u, i, j, lr, reg):
    x_i, x_j = _dots(U, V, u, i, j)
    s, loss = _logistic(x_i - x_j)
    _ascend(U, V, u, i, j, 1.0 - s, s - 1.0, lr, reg)
    return loss


@njit(cache=True)
def _bpo_step(U, V, u, i, j, lr, reg):
    x_i, x_j = _dots(U, V, u, i, j)
    s_i, loss_i = _logistic(x_i)
    s_j, loss_j = _logistic(x_j)
    _ascend(U, V, u, i, j, 1.0 - s_i, -s_j, lr, reg)
    return loss_i + loss_j + x_j


@njit(cache=True)
def _nbpo_step(U, V, P, Q, u, i, j, lr, reg, flip_lr, flip_reg):
    x_i, x_j = _dots(U, V, u, i, j)
    gamma_i, gamma_j = _dots(P, Q, u, i, j)
    s_i, nls_i = _logistic(x_i)  # nls: -log sigma
    s_j, nls_j = _logistic(x_j)
    rho_i, nlr_i = _logistic(gamma_i)
    rho_j, nlr_j = _logistic(gamma_j)
    # positive: sg(1-rho) log s + sg(s) log(1-rho);  d/dx = (1-rho)(1-s), d/dgamma = -s rho
    # negative: log(1-s) + sg(rho) log s + sg(s) log rho;  d/dx = -s + rho(1-s), d/dgamma = s(1-rho)
    _ascend(U, V, u, i, j, (1.0 - rho_i) * (1.0 - s_i), rho_j * (1.0 - s_j) - s_j, lr, reg)
    _ascend(P, Q, u, i, j, -s_i * rho_i, s_j * (1.0 - rho_j), flip_lr, flip_reg)
    positive = (1.0 - rho_i) * nls_i + s_i * (nlr_i + gamma_i)
    negative = (nls_j + x_j) + rho_j * nls_j + s_j * nlr_j
    return positive + negative


# --- the epoch -------------------------------------------------------------------------------
# Plain nogil functions run on Python threads rather than numba's parallel=True: they compile in
# a fraction of the time, and do not depend on numba's threading layer, whose fallback layer
# ("workqueue", used when neither TBB nor OpenMP loads) aborts when two threads enter parallel code.
@njit(cache=True)
def _touch(A, row):
    """Load one value per 64-byte cache line of A[row] (16 float32), so a later update finds the row in cache."""
    total = np.float32(0.0)
    for f in range(0, A.shape[1], 16):
        total += A[row, f]
    return total


@njit(fastmath=True, nogil=True, cache=True)
def _train_chunks(U, V, P, Q, pairs, indptr, indices, alias_prob, alias_item,
                  objective, lr, reg, flip_lr, flip_reg, n_neg, seed, first_chunk, last_chunk, out):
    """SGD over chunks [first_chunk, last_chunk) of the epoch's draws.

    Writes each chunk's summed loss to out[c, 0]; out[c, 1] receives the sum of the prefetch
    loads, a store that keeps the compiler from dropping them.
    """
    n_pos = pairs.shape[0]
    n_items = V.shape[0]
    lr32, reg32 = np.float32(lr), np.float32(reg)
    flip_lr32, flip_reg32 = np.float32(flip_lr), np.float32(flip_reg)
    users = np.empty(_GROUP, dtype=np.int64)
    positives = np.empty(_GROUP, dtype=np.int64)
    negatives = np.empty((_GROUP, n_neg), dtype=np.int64)
    for c in range(first_chunk, last_chunk):
        state = _stream(seed, c)
        total = 0.0
        warm = np.float32(0.0)
        stop = min((c + 1) * _CHUNK, n_pos)
        for start in range(c * _CHUNK, stop, _GROUP):
            size = min(_GROUP, stop - start)
            # draw the whole group first: its independent cache misses overlap
            for g in range(size):
                state, z = _next(state)
                row = _below(z, n_pos)
                users[g], positives[g] = pairs[row, 0], pairs[row, 1]
            for g in range(size):
                for k in range(n_neg):
                    state, negatives[g, k] = _draw_negative(state, users[g], indptr, indices, n_items,
                                                            alias_prob, alias_item)
            total, warm, _ = _step_group(U, V, P, Q, users, positives, negatives, size, n_neg, objective,
                                         lr32, reg32, flip_lr32, flip_reg32, total, warm)
        out[c, 0] = total
        out[c, 1] = warm


@njit(fastmath=True, nogil=True, cache=True)
def _step_group(U, V, P, Q, users, positives, negatives, size, n_neg, objective, lr32, reg32, flip_lr32,
                flip_reg32, total, warm):
    """Touch the rows of a drawn group (their cache misses overlap), then step its triples strictly one
    after another. Returns (total + the group's loss, warm + the prefetch sum, steps taken)."""
    for g in range(size):
        warm += _touch(U, users[g]) + _touch(V, positives[g])
        for k in range(n_neg):
            warm += _touch(V, negatives[g, k])
        if objective == _NBPO:
            warm += P[users[g], 0] + Q[positives[g], 0] + Q[negatives[g, 0], 0]
    steps = 0
    for g in range(size):
        u, i = users[g], positives[g]
        for k in range(n_neg):
            j = negatives[g, k]
            if objective == _BPR:
                total += _bpr_step(U, V, u, i, j, lr32, reg32)
            elif objective == _BPO:
                total += _bpo_step(U, V, u, i, j, lr32, reg32)
            else:
                total += _nbpo_step(U, V, P, Q, u, i, j, lr32, reg32, flip_lr32, flip_reg32)
            steps += 1
    return total, warm, steps


@njit(nogil=True, cache=True)
def _negatives(users, indptr, indices, n_items, alias_prob, alias_item, seed):
    """The negative `_draw_negative` gives for each entry of `users` (one random stream each)."""
    out = np.empty(users.shape[0], dtype=np.int64)
    for c in range(users.shape[0]):
        _, out[c] = _draw_negative(_stream(seed, c), users[c], indptr, indices, n_items, alias_prob, alias_item)
    return out


# --- the race-free schedule: stratified epochs ------------------------------------------------
@njit(nogil=True, cache=True)
def _permutation(n, state):
    """A uniform random permutation of 0..n-1 (Fisher-Yates)."""
    perm = np.arange(n)
    for k in range(n - 1, 0, -1):
        state, z = _next(state)
        m = _below(z, k + 1)
        perm[k], perm[m] = perm[m], perm[k]
    return perm


@njit(nogil=True, cache=True)
def _blocks_of(n, blocks, state):
    """Random equal-size blocks of 0..n-1: (block of each element, elements ordered by block, block starts)."""
    perm = _permutation(n, state)
    block_of = np.empty(n, dtype=np.int64)
    start = np.zeros(blocks + 1, dtype=np.int64)
    for k in range(n):
        b = k * blocks // n
        block_of[perm[k]] = b
        start[b + 1] = k + 1
    for b in range(1, blocks + 1):  # an empty block starts where the one before it ends
        start[b] = max(start[b], start[b - 1])
    return block_of, perm, start


@njit(nogil=True, cache=True)
def _stratify(pairs, indptr, indices, n_items, blocks, seed, item_prob):
    """One epoch's strata: random user and item blocks, and the positives of each (user block, item block).

    Returns (rows of `pairs` grouped by stratum a * blocks + b, stratum starts, item block of each
    item, items ordered by block, item block starts, can_draw[u, b]: whether user u has an item
    left to draw as a negative in item block b).
    """
    n_users = indptr.shape[0] - 1
    user_block, _, _ = _blocks_of(n_users, blocks, _stream(seed, 0))
    item_block, block_items, block_start = _blocks_of(n_items, blocks, _stream(seed, 1))
    n_strata = blocks * blocks
    counts = np.zeros(n_strata + 1, dtype=np.int64)
    key = np.empty(pairs.shape[0], dtype=np.int32)  # int32 rows and keys: 8 bytes per positive, not 16
    for r in range(pairs.shape[0]):
        key[r] = user_block[pairs[r, 0]] * blocks + item_block[pairs[r, 1]]
        counts[key[r] + 1] += 1
    for s in range(n_strata):
        counts[s + 1] += counts[s]
    fill = counts[:n_strata].copy()
    rows = np.empty(pairs.shape[0], dtype=np.int32)
    for r in range(pairs.shape[0]):
        rows[fill[key[r]]] = r
        fill[key[r]] += 1
    # what each user's positives take out of each block: a count (uniform) or a probability mass
    block_mass = np.zeros(blocks)
    for i in range(n_items):
        block_mass[item_block[i]] += 1.0 if item_prob.shape[0] == 0 else item_prob[i]
    can_draw = np.empty((n_users, blocks), dtype=np.bool_)
    taken = np.empty(blocks)
    for u in range(n_users):
        taken[:] = 0.0
        for p in range(indptr[u], indptr[u + 1]):
            i = indices[p]
            taken[item_block[i]] += 1.0 if item_prob.shape[0] == 0 else item_prob[i]
        for b in range(blocks):
            left = block_mass[b] - taken[b]
            can_draw[u, b] = left > 0.5 if item_prob.shape[0] == 0 else left > 1e-12
    return rows, counts, item_block, block_items, block_start, can_draw


@njit(cache=True)
def _draw_block_negative(state, user, indptr, indices, block, item_block, block_items, blo, bhi,
                         alias_prob, alias_item):
    """An item of item block `block` that is not one of `user`'s training positives (rejection sampling).

    Uniform: straight from the block's items. Weighted: from the whole alias table, redrawn until
    it lands in the block, i.e. the weights restricted to the block.
    """
    lo, hi = indptr[user], indptr[user + 1]
    n_items = item_block.shape[0]
    while True:
        state, z = _next(state)
        if alias_prob.shape[0] == 0:
            item = np.int64(block_items[blo + _below(z, bhi - blo)])
        else:
            item = _below(z, n_items)
            if np.float64(z & _LOW32) * _TWO_POW_M32 >= alias_prob[item]:
                item = np.int64(alias_item[item])
            if item_block[item] != block:
                continue
        if not _contains(indices, lo, hi, item):
            return state, item


@njit(fastmath=True, nogil=True, cache=True)
def _train_stratum(U, V, P, Q, pairs, rows, lo, hi, block, item_block, block_items, blo, bhi, can_draw,
                   indptr, indices, alias_prob, alias_item, objective, lr, reg, flip_lr, flip_reg, n_neg,
                   seed, out, slot):
    """SGD on stratum `slot`: hi - lo positives drawn with replacement from rows[lo:hi], negatives from item block `block`.

    Its random stream depends on (seed, slot) alone. Touches only the rows of the stratum's user block and item block. out[slot] receives (summed
    loss, prefetch sum that keeps the loads alive, steps taken).
    """
    n = hi - lo
    state = _stream(seed, 2 + slot)  # streams 0 and 1 drew the epoch's blocks
    lr32, reg32 = np.float32(lr), np.float32(reg)
    flip_lr32, flip_reg32 = np.float32(flip_lr), np.float32(flip_reg)
    users = np.empty(_GROUP, dtype=np.int64)
    positives = np.empty(_GROUP, dtype=np.int64)
    negatives = np.empty((_GROUP, n_neg), dtype=np.int64)
    total = 0.0
    warm = np.float32(0.0)
    steps = 0
    for start in range(0, n, _GROUP):
        size = 0
        # draw the whole group first: its independent cache misses overlap
        for _ in range(min(_GROUP, n - start)):
            state, z = _next(state)
            row = rows[lo + _below(z, n)]
            u = pairs[row, 0]
            if can_draw[u, block]:  # else no negative exists in this block: the draw makes no step
                users[size], positives[size] = u, pairs[row, 1]
                size += 1
        for g in range(size):
            for k in range(n_neg):
                state, negatives[g, k] = _draw_block_negative(state, users[g], indptr, indices, block, item_block,
                                                              block_items, blo, bhi, alias_prob, alias_item)
        total, warm, done = _step_group(U, V, P, Q, users, positives, negatives, size, n_neg, objective,
                                        lr32, reg32, flip_lr32, flip_reg32, total, warm)
        steps += done
    out[slot, 0] = total
    out[slot, 1] = warm
    out[slot, 2] = steps


# --- Python side -----------------------------------------------------------------------------
def weight_view(weight: Any, name: str = "weight") -> np.ndarray:
    """A float32 C-contiguous numpy array sharing memory with `weight` (a numpy array or CPU torch tensor).

    Raises instead of copying: the kernel's updates must land in the caller's table.
    """
    array = weight.detach().numpy() if hasattr(weight, "detach") else weight
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise UserInputError(f"{name} must be a 2-D float32 array or CPU tensor, got {type(weight).__name__}")
    if array.dtype != np.float32 or not array.flags.c_contiguous or not array.flags.writeable:
        raise UserInputError(f"{name} must be float32, C-contiguous and writeable "
                             f"(got {array.dtype}, contiguous={array.flags.c_contiguous})")
    return array


def positives_csr(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of each user's distinct positives, sorted within rows: what negatives are rejected against."""
    keys = np.unique(np.asarray(users, dtype=np.int64) * n_items + np.asarray(items, dtype=np.int64))
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // n_items, minlength=n_users), out=indptr[1:])
    return indptr, keys % n_items


class CompiledSGD:
    """Per-sample SGD epochs over fixed training positives; validates its inputs once.

    `users`, `items`: the training positives (one row per positive; repeats are drawn more often).
    `train_indptr`, `train_indices`: CSR of each user's positives, sorted within rows (see
    `positives_csr`); negatives are rejected against it, so it must hold every training positive.
    `item_weights`: None for uniform negatives, else non-negative per-item sampling weights
    (e.g. train counts ** 0.75 for popularity-weighted negatives), drawn in O(1) by an alias table.
    `num_threads`: threads for the epoch (None: numba's setting, NUMBA_NUM_THREADS or the CPU count).
    `schedule`: "stratified" (default) gives the same weights for a seed at any thread count;
    "hogwild" lets threads race on shared rows: a little faster, not reproducible with more than
    one thread (see the module's docstring).
    `blocks`: user and item blocks of the stratified schedule (None: up to 4, fewer for small
    catalogs); the results depend on it, never on `num_threads`.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, train_indptr: np.ndarray,
                 train_indices: np.ndarray, n_items: int, *, objective: str, lr: float, reg: float,
                 n_neg: int = 1, flip_reg: float = 0.0, flip_lr: float | None = None,
                 item_weights: np.ndarray | None = None, num_threads: int | None = None,
                 schedule: str = "stratified", blocks: int | None = None):
        if objective not in OBJECTIVES:
            raise UserInputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if n_neg < 1:
            raise UserInputError(f"n_neg (negatives per positive) must be >= 1, got {n_neg}")
        if not (lr > 0 and reg >= 0 and flip_reg >= 0 and (flip_lr is None or flip_lr > 0)):
            raise UserInputError(f"need lr > 0, flip_lr > 0, reg >= 0 and flip_reg >= 0, got {lr}, {flip_lr}, {reg}, {flip_reg}")
        if num_threads is not None and num_threads < 1:
            raise UserInputError(f"num_threads must be >= 1, got {num_threads}")
        if schedule not in SCHEDULES:
            raise UserInputError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if blocks is not None and blocks < 1:
            raise UserInputError(f"blocks must be >= 1, got {blocks}")
        if not 0 < n_items < 2**31:
            raise UserInputError(f"n_items must be in 1..2**31-1, got {n_items}")
        self.objective, self.lr, self.reg, self.flip_reg = objective, float(lr), float(reg), float(flip_reg)
        self.flip_lr = None if flip_lr is None else float(flip_lr)
        self.n_neg, self.n_items = int(n_neg), int(n_items)
        self.num_threads = numba.get_num_threads() if num_threads is None else int(num_threads)
        users, items = np.asarray(users), np.asarray(items)
        if users.ndim != 1 or users.shape != items.shape or len(users) == 0:
            raise UserInputError("users and items must be equal-length, non-empty 1-D arrays")
        if len(users) >= 2**31:
            raise UserInputError(f"at most 2**31-1 training positives per process, got {len(users)}")
        self.indptr = np.ascontiguousarray(train_indptr, dtype=np.int64)
        self.n_users = len(self.indptr) - 1
        if users.min() < 0 or users.max() >= self.n_users or items.min() < 0 or items.max() >= n_items:
            raise UserInputError(f"users/items hold ids outside {self.n_users} users x {n_items} items")
        # int32 pairs side by side: the random positive costs one cache miss, not two
        self.pairs = np.ascontiguousarray(np.stack([users, items], axis=1), dtype=np.int32)
        self._check_csr(np.asarray(train_indices))
        self.indices = np.ascontiguousarray(train_indices, dtype=np.int32)
        self.alias_prob, self.alias_item = self._sampler(item_weights)
        self.schedule = schedule
        self.blocks = int(blocks) if blocks is not None else max(1, min(_BLOCKS, n_items // _MIN_BLOCK_ITEMS))
        self.item_prob = np.empty(0)
        if item_weights is not None:
            weights = np.asarray(item_weights, dtype=np.float64)
            self.item_prob = weights / weights.sum()

    @property
    def samples_per_epoch(self) -> int:
        """Triples (user, positive, negative) per epoch: one SGD step each."""
        return len(self.pairs) * self.n_neg

    def _check_csr(self, indices: np.ndarray) -> None:
        indptr = self.indptr
        if self.n_users < 1 or indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
            raise UserInputError("train_indptr must start at 0, never decrease and end at len(train_indices)")
        if len(indices) and (indices.min() < 0 or indices.max() >= self.n_items):
            raise UserInputError("train_indices hold item ids outside the item table")
        # strictly increasing within each row, as the binary search needs
        rising = np.diff(indices) > 0
        row_ends = indptr[1:-1]
        rising[row_ends[(row_ends > 0) & (row_ends < len(indices))] - 1] = True
        if not rising.all():
            raise UserInputError("train_indices must be sorted and distinct within each user's row")

    def _sampler(self, item_weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The alias table (empty for uniform), after refusing users with no item left to draw.

        Rejection sampling would loop forever for such a user.
        """
        degree = np.diff(self.indptr)
        drawn_users = self.pairs[:, 0]
        if item_weights is None:
            stuck = degree[drawn_users] >= self.n_items
            table = (np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int32))
        else:
            weights = np.asarray(item_weights, dtype=np.float64)
            if weights.shape != (self.n_items,) or not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
                raise UserInputError(f"item_weights must be {self.n_items} finite non-negative numbers with a positive sum")
            prob = weights / weights.sum()
            alias_prob, alias_item = _alias_table(prob)
            zero = prob == 0  # a zero-weight column left with probability 1 by rounding must never draw itself
            alias_prob[zero] = 0.0
            alias_item[zero & (alias_item == np.arange(self.n_items))] = int(np.argmax(prob))
            table = (alias_prob, alias_item)
            mass = np.add.reduceat(np.append(prob[self.indices], 0.0), self.indptr[:-1]) * (degree > 0)
            stuck = mass[drawn_users] >= 1.0 - 1e-9
        if stuck.any():
            raise UserInputError(f"user {int(drawn_users[np.argmax(stuck)])} has no item left to sample as a negative")
        return table

    def epoch(self, user_w: Any, item_w: Any, *, seed: int, flip_user_w: Any = None, flip_item_w: Any = None,
              lr: float | None = None, flip_lr: float | None = None) -> float:
        """Train one epoch in place on the given tables; return the mean per-triple loss (data term, before each step).

        `lr`, `flip_lr` override the constructor's learning rates for this epoch (for schedules);
        without a flip learning rate anywhere, the flip factors move at the preference `lr`.
        """
        U, V = weight_view(user_w, "user_w"), weight_view(item_w, "item_w")
        if U.shape[0] != self.n_users or V.shape[0] != self.n_items or U.shape[1] != V.shape[1]:
            raise UserInputError(f"tables {U.shape} and {V.shape} do not fit {self.n_users} users x "
                                 f"{self.n_items} items with one shared dimension")
        if self.objective == "nbpo":
            if flip_user_w is None or flip_item_w is None:
                raise UserInputError("objective 'nbpo' needs flip_user_w and flip_item_w")
            P, Q = weight_view(flip_user_w, "flip_user_w"), weight_view(flip_item_w, "flip_item_w")
            if P.shape[0] != self.n_users or Q.shape[0] != self.n_items or P.shape[1] != Q.shape[1]:
                raise UserInputError(f"flip tables {P.shape} and {Q.shape} do not fit the preference tables")
        else:
            P = Q = np.empty((0, 1), dtype=np.float32)
        if not 0 <= seed < 2**63:
            raise UserInputError(f"seed must be in 0..2**63-1, got {seed}")
        step = self.lr if lr is None else float(lr)
        flip_step = float(flip_lr) if flip_lr is not None else self.flip_lr if self.flip_lr is not None else step
        objective = OBJECTIVES.index(self.objective)
        if self.schedule == "stratified":
            return self._stratified_epoch(U, V, P, Q, objective, step, flip_step, seed)
        n_chunks = -(-len(self.pairs) // _CHUNK)
        chunk_loss = np.zeros((n_chunks, 2))
        args = (U, V, P, Q, self.pairs, self.indptr, self.indices, self.alias_prob, self.alias_item,
                objective, step, self.reg, flip_step, self.flip_reg, self.n_neg, seed)
        bounds = np.linspace(0, n_chunks, min(self.num_threads, n_chunks) + 1).round().astype(int)
        if len(bounds) == 2:
            _train_chunks(*args, 0, n_chunks, chunk_loss)
        else:  # lock-free (Hogwild): threads race only on rows they share, which SGD tolerates
            with ThreadPoolExecutor(len(bounds) - 1) as pool:
                for done in [pool.submit(_train_chunks, *args, lo, hi, chunk_loss) for lo, hi in zip(bounds, bounds[1:])]:
                    done.result()
        return float(chunk_loss[:, 0].sum() / self.samples_per_epoch)

    def _stratified_epoch(self, U, V, P, Q, objective: int, lr: float, flip_lr: float, seed: int) -> float:
        """T sub-epochs; in sub-epoch s, stratum (a, (a + s) mod T) for every user block a, in any order or in parallel.

        The strata of one sub-epoch share no row of U, V, P or Q, so running them on any number of
        threads, in any order, gives the same tables bit for bit.
        """
        T = self.blocks
        rows, starts, item_block, block_items, block_start, can_draw = _stratify(
            self.pairs, self.indptr, self.indices, self.n_items, T, seed, self.item_prob)
        out = np.zeros((T * T, 3))

        def run(stratum: int) -> None:
            a, b = divmod(stratum, T)
            _train_stratum(U, V, P, Q, self.pairs, rows, starts[stratum], starts[stratum + 1], b, item_block,
                           block_items, block_start[b], block_start[b + 1], can_draw, self.indptr, self.indices,
                           self.alias_prob, self.alias_item, objective, lr, self.reg, flip_lr, self.flip_reg,
                           self.n_neg, seed, out, stratum)

        sub_epochs = [[a * T + (a + s) % T for a in range(T)] for s in range(T)]
        threads = min(self.num_threads, T)
        if threads == 1:
            for stratum in (x for strata in sub_epochs for x in strata):
                run(stratum)
        else:
            with ThreadPoolExecutor(threads) as pool:
                for strata in sub_epochs:  # a barrier between sub-epochs: the next one shares rows with this one
                    list(pool.map(run, strata))
        return float(out[:, 0].sum() / max(1.0, out[:, 2].sum()))

    def sample_negatives(self, users: np.ndarray, seed: int) -> np.ndarray:
        """One negative for each entry of `users`, drawn by the sampler the epoch uses."""
        return _negatives(np.ascontiguousarray(users, dtype=np.int64), self.indptr, self.indices, self.n_items,
                          self.alias_prob, self.alias_item, seed)


def sgd_epoch(user_w: Any, item_w: Any, users: np.ndarray, items: np.ndarray, train_indptr: np.ndarray,
              train_indices: np.ndarray, *, objective: str, lr: float, reg: float, n_neg: int = 1, seed: int,
              flip_user_w: Any = None, flip_item_w: Any = None, flip_reg: float = 0.0, flip_lr: float | None = None,
              item_weights: np.ndarray | None = None, num_threads: int | None = None) -> float:
    """One epoch of per-sample SGD in place on `user_w`/`item_w` (and the flip tables for NBPO).

    Validates its inputs on every call (O(positives)); hold a `CompiledSGD` to validate once.
    """
    trainer = CompiledSGD(users, items, train_indptr, train_indices, weight_view(item_w, "item_w").shape[0],
                          objective=objective, lr=lr, reg=reg, n_neg=n_neg, flip_reg=flip_reg, flip_lr=flip_lr,
                          item_weights=item_weights, num_threads=num_threads)
    return trainer.epoch(user_w, item_w, seed=seed, flip_user_w=flip_user_w, flip_item_w=flip_item_w)
