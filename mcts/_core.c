/* treeq.mcts._core: the compiled hot path of tree-mode search.
 *
 * It works on the engine's own storage, the Python lists of treeq.mcts.storage.SearchGraph,
 * and computes exactly what the Python code it stands in for computes: the descent
 * (_Engine._descend_py), the mean backup of the one-leaf loop, SearchGraph._new_node /
 * _expand / _place for a fixed transition, _Engine._expand_and_evaluate of one leaf and the wave loop of _Engine.run for one leaf a
 * wave, and the export's column gathers. The same scores in the same floating-point
 * order, the same tie-breaking (the first best edge), the same hook calls in the same
 * order, so a search gives the same tree with or without it (tests/mcts/test_core.py
 * checks this on every kind of env). The env and the hooks stay Python calls; sampled
 * outcomes, the solver's proofs and bounds, checked proposals and eager expansion call
 * back into the engine's Python methods. Graph mode runs in Python apart from the
 * node/edge appends and the export (its Q reads the sampled-outcome model).
 *
 * Why one file of this length (the 400-line rule): it is one translation unit of the
 * CPython C API with no shared state beyond its interned names; split, the pieces would
 * need a header of the storage layouts that this file now declares once, next to the
 * code that reads them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>
#include <time.h>

/* must match treeq/mcts/codes.py */
#define UNSTEPPED (-1)
#define D_NEW 0
#define D_EVAL 1
#define D_TERMINAL 2
#define D_VALUED 3

/* the storage lists, in the order search.py packs them (_Engine._core_lists) */
enum { L_VISITS, L_START, L_COUNT, L_NEXT, L_OFF, L_EN, L_EW, L_CHILD, L_REWARD, L_DEAD, L_PRIOR, L_SOLVED,
       L_EVAL_N, L_COUNT_ALL };

/* what the loop calls and the lists it appends to (_Engine._core_hooks) */
enum { H_ENV_STEP, H_RNG, H_PROPOSE, H_EVALUATE, H_K, H_ERROR, H_DRAW, H_NODES, H_EDGES, H_LEGAL, H_ROLLOUT,
       H_COUNT_ALL };
/* H_LEGAL: env.legal_actions when propose is the built-in uniform_propose of this env, else None;
 * H_ROLLOUT: (env.playout, draw, gamma, max_steps, rng) when evaluate is the built-in random_rollout,
 * else None. Then the loop calls them directly, with the same results as through the hooks. */

typedef struct {
    PyObject *l[L_COUNT_ALL];
    double c, fpu;
    int uct, plain, solver, det, trusted, eager;
    Py_ssize_t max_depth, max_nodes;
    PyObject *h[H_COUNT_ALL];
} Ctx;

/* attribute names, interned once at import (PyObject_GetAttrString would build one per call) */
static PyObject *S_rows, *S_full, *S_solution, *S_reward, *S_terminated, *S_truncated, *S_info, *S_state, *S_success,
    *S_deterministic;

static inline long geti(PyObject *list, Py_ssize_t i) { return PyLong_AsLong(PyList_GET_ITEM(list, i)); }

static inline double getf(PyObject *list, Py_ssize_t i) {
    PyObject *o = PyList_GET_ITEM(list, i);
    return PyFloat_CheckExact(o) ? PyFloat_AS_DOUBLE(o) : PyFloat_AsDouble(o);
}

static inline int seti(PyObject *list, Py_ssize_t i, long v) {
    PyObject *o = PyLong_FromLong(v);
    return o ? PyList_SetItem(list, i, o) : -1;
}

static inline int incr(PyObject *list, Py_ssize_t i) { return seti(list, i, geti(list, i) + 1); }

/* the n lists of a storage tuple into out[]; -1 with a TypeError when it is not that */
static int lists_of(PyObject *tuple, int n, PyObject **out) {
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != n) {
        PyErr_Format(PyExc_TypeError, "_core: expected a tuple of %d storage lists", n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        out[i] = PyTuple_GET_ITEM(tuple, i);
        if (!PyList_CheckExact(out[i])) {
            PyErr_SetString(PyExc_TypeError, "_core: storage must be lists");
            return -1;
        }
    }
    return 0;
}

static int unpack(PyObject *lists, PyObject *params, PyObject *hooks, Ctx *x) {
    if (lists_of(lists, L_COUNT_ALL, x->l) < 0)
        return -1;
    if (!PyArg_ParseTuple(params, "ddppppppnn", &x->c, &x->fpu, &x->uct, &x->plain, &x->solver, &x->det,
                          &x->trusted, &x->eager, &x->max_depth, &x->max_nodes))
        return -1;
    if (!PyTuple_Check(hooks) || PyTuple_GET_SIZE(hooks) != H_COUNT_ALL) {
        PyErr_SetString(PyExc_TypeError, "_core: bad hooks tuple");
        return -1;
    }
    for (int i = 0; i < H_COUNT_ALL; i++)
        x->h[i] = PyTuple_GET_ITEM(hooks, i);
    if (!PyTuple_Check(x->h[H_NODES]) || PyTuple_GET_SIZE(x->h[H_NODES]) != 10 || !PyTuple_Check(x->h[H_EDGES]) ||
        PyTuple_GET_SIZE(x->h[H_EDGES]) != 12 ||
        (x->h[H_ROLLOUT] != Py_None && (!PyTuple_Check(x->h[H_ROLLOUT]) || PyTuple_GET_SIZE(x->h[H_ROLLOUT]) != 5))) {
        PyErr_SetString(PyExc_TypeError, "_core: bad node or edge lists");
        return -1;
    }
    return 0;
}

/* The selection rules of treeq/mcts/selection.py, written once here: the same expressions in
 * the same floating-point order (UCT's unvisited edge scores +inf). */
static inline double uct_explore(double c, long parent_n) {
    return c * (parent_n > 0 ? sqrt(log((double)parent_n)) : 0.0);
}

static inline double puct_explore(double c, long parent_n) { return c * sqrt((double)parent_n); }

static inline double uct_score(PyObject *e_w, Py_ssize_t e, long n, double explore) {
    return n ? getf(e_w, e) / (double)n + explore * (1.0 / sqrt((double)n)) : INFINITY;
}

static inline double puct_score(PyObject *e_w, Py_ssize_t e, long n, double prior, double explore, double fpu) {
    return n ? getf(e_w, e) / (double)n + explore * prior / (double)(1 + n) : fpu + explore * prior;
}

/* UCT / PUCT over the node's live edges, as _Engine._select in tree mode; -1 when none. */
static Py_ssize_t select_edge(Ctx *x, Py_ssize_t s, Py_ssize_t stop, long parent_n) {
    PyObject *e_n = x->l[L_EN], *e_w = x->l[L_EW], *e_child = x->l[L_CHILD], *e_dead = x->l[L_DEAD];
    PyObject *n_solved = x->l[L_SOLVED], *e_prior = x->l[L_PRIOR];
    double explore = x->uct ? uct_explore(x->c, parent_n) : puct_explore(x->c, parent_n);
    double best = -INFINITY;
    Py_ssize_t best_e = -1;
    for (Py_ssize_t e = s; e < stop; e++) {
        if (PyList_GET_ITEM(e_dead, e) == Py_True)
            continue;
        long child = geti(e_child, e);
        if (child >= 0 && x->solver && PyList_GET_ITEM(n_solved, child) != Py_None)
            continue;
        long n = geti(e_n, e);
        double score = x->uct ? uct_score(e_w, e, n, explore) : puct_score(e_w, e, n, getf(e_prior, e), explore, x->fpu);
        if (score > best) {
            best = score;
            best_e = e;
        }
    }
    return best_e;
}

static int append_double(PyObject *list, double v) {
    PyObject *o = PyFloat_FromDouble(v);
    if (!o)
        return -1;
    int r = PyList_Append(list, o);
    Py_DECREF(o);
    return r;
}

/* a true attribute of the engine: 1, 0, or -1 on error */
static int flag_of(PyObject *engine, PyObject *name) {
    PyObject *v = PyObject_GetAttr(engine, name);
    if (!v)
        return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

/* the edge lists _expand extends, in storage.py's order (SearchGraph._edge_lists) */
enum { X_ACTION, X_PRIOR, X_FEEDBACK, X_EN, X_EW, X_CHILD, X_REWARD, X_DEAD, X_OWNER, X_START, X_COUNT, X_OFF,
       X_COUNT_ALL };

/* expand(lists, node, proposals, draw): append the node's edges, one per (action, prior[, feedback])
 * proposal, as SearchGraph._expand does for proposals already checked; draw() (or None) picks the
 * first edge UCT tries. The dead-end and eager-step cases stay with the caller. With a prior
 * `uniform` (not NaN) the proposals are the action texts alone, as uniform_propose gives them. */
static int expand_edges(PyObject *lists, Py_ssize_t node, PyObject *proposals, PyObject *draw, double uniform) {
    PyObject *l[X_COUNT_ALL];
    if (lists_of(lists, X_COUNT_ALL, l) < 0)
        return -1;
    Py_ssize_t start = PyList_GET_SIZE(l[X_ACTION]), k = PyList_GET_SIZE(proposals);
    PyObject *zero = PyLong_FromLong(0), *zerof = PyFloat_FromDouble(0.0), *unstepped = PyLong_FromLong(UNSTEPPED);
    PyObject *owner = PyLong_FromSsize_t(node);
    int ok = zero && zerof && unstepped && owner;
    for (Py_ssize_t i = 0; ok && i < k; i++) {
        PyObject *prop = PyList_GET_ITEM(proposals, i), *action = prop;
        double prior = uniform, fb = NAN;
        if (isnan(uniform)) { /* (action, prior[, feedback]), a tuple or a list as the Python path takes it */
            if (!(PyTuple_Check(prop) || PyList_Check(prop)) || PySequence_Fast_GET_SIZE(prop) < 2) {
                PyErr_SetString(PyExc_TypeError, "a proposal must be (action, prior[, feedback])");
                ok = 0;
                break;
            }
            PyObject **item = PySequence_Fast_ITEMS(prop);
            action = item[0];
            prior = PyFloat_AsDouble(item[1]);
            if (PySequence_Fast_GET_SIZE(prop) > 2 && item[2] != Py_None)
                fb = PyFloat_AsDouble(item[2]);
            if (PyErr_Occurred()) {
                ok = 0;
                break;
            }
        }
        ok = PyList_Append(l[X_ACTION], action) == 0 && append_double(l[X_PRIOR], prior) == 0 &&
             append_double(l[X_FEEDBACK], fb) == 0 && PyList_Append(l[X_EN], zero) == 0 &&
             PyList_Append(l[X_EW], zerof) == 0 && PyList_Append(l[X_CHILD], unstepped) == 0 &&
             PyList_Append(l[X_REWARD], zerof) == 0 && PyList_Append(l[X_DEAD], Py_False) == 0 &&
             PyList_Append(l[X_OWNER], owner) == 0;
    }
    Py_XDECREF(zero);
    Py_XDECREF(zerof);
    Py_XDECREF(unstepped);
    Py_XDECREF(owner);
    if (!ok)
        return -1;
    if (seti(l[X_START], node, (long)start) < 0 || seti(l[X_COUNT], node, (long)k) < 0)
        return -1;
    if (k > 1 && draw != Py_None) {
        PyObject *u = PyObject_CallNoArgs(draw);
        if (!u)
            return -1;
        double v = PyFloat_AsDouble(u);
        Py_DECREF(u);
        if (v == -1.0 && PyErr_Occurred())
            return -1;
        if (seti(l[X_OFF], node, (long)(v * (double)k)) < 0)
            return -1;
    }
    return 0;
}

static PyObject *expand(PyObject *self, PyObject *args) {
    PyObject *lists, *proposals, *draw;
    Py_ssize_t node;
    if (!PyArg_ParseTuple(args, "O!nO!O", &PyTuple_Type, &lists, &node, &PyList_Type, &proposals, &draw))
        return NULL;
    if (expand_edges(lists, node, proposals, draw, NAN) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* the node lists _new_node appends to, in storage.py's order (SearchGraph._node_lists) */
enum { N_STATE, N_TERM, N_START, N_COUNT, N_NEXT, N_OFF, N_VISITS, N_EVAL_SUM, N_EVAL_N, N_SOLVED, N_COUNT_ALL };

/* new_node(lists, state, terminal, solved) -> id: append one decision node, as
 * SearchGraph._new_node does before its solver-bound and graph-mode extras; solved is
 * its n_solved entry (None or V*). */
static Py_ssize_t append_node(PyObject *lists, PyObject *state, int terminal, PyObject *solved) {
    PyObject *l[N_COUNT_ALL];
    if (lists_of(lists, N_COUNT_ALL, l) < 0)
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(l[N_STATE]);
    PyObject *zero = PyLong_FromLong(0), *zerof = PyFloat_FromDouble(0.0);
    PyObject *start = PyLong_FromLong(terminal ? -2 /* END */ : UNSTEPPED);
    int ok = zero && zerof && start && PyList_Append(l[N_STATE], state) == 0 &&
             PyList_Append(l[N_TERM], terminal ? Py_True : Py_False) == 0 && PyList_Append(l[N_START], start) == 0 &&
             PyList_Append(l[N_COUNT], zero) == 0 && PyList_Append(l[N_NEXT], zero) == 0 &&
             PyList_Append(l[N_OFF], zero) == 0 && PyList_Append(l[N_VISITS], zero) == 0 &&
             PyList_Append(l[N_EVAL_SUM], zerof) == 0 && PyList_Append(l[N_EVAL_N], zero) == 0 &&
             PyList_Append(l[N_SOLVED], solved) == 0;
    Py_XDECREF(zero);
    Py_XDECREF(zerof);
    Py_XDECREF(start);
    return ok ? n : -1;
}

static PyObject *new_node(PyObject *self, PyObject *args) {
    PyObject *lists, *state, *solved;
    int terminal;
    if (!PyArg_ParseTuple(args, "O!OpO", &PyTuple_Type, &lists, &state, &terminal, &solved))
        return NULL;
    Py_ssize_t n = append_node(lists, state, terminal, solved);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

/* one descent's path: nodes[0..len], edges[0..len-1], rewards[0..len-1] */
typedef struct {
    Py_ssize_t len, cap;
    long *nodes;
    Py_ssize_t *edges;
    double *rewards;
    int how;
    double value;
} Path;

static int path_init(Path *p) {
    p->len = 0;
    p->cap = 64;
    p->nodes = PyMem_Malloc(sizeof(long) * (p->cap + 1));
    p->edges = PyMem_Malloc(sizeof(Py_ssize_t) * p->cap);
    p->rewards = PyMem_Malloc(sizeof(double) * p->cap);
    if (!p->nodes || !p->edges || !p->rewards) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void path_free(Path *p) {
    PyMem_Free(p->nodes);
    PyMem_Free(p->edges);
    PyMem_Free(p->rewards);
}

static int path_push(Path *p, Py_ssize_t e, double reward, long child) {
    if (p->len == p->cap) {
        Py_ssize_t cap = p->cap * 2;
        long *nodes = PyMem_Realloc(p->nodes, sizeof(long) * (cap + 1));
        if (nodes)
            p->nodes = nodes;
        Py_ssize_t *edges = PyMem_Realloc(p->edges, sizeof(Py_ssize_t) * cap);
        if (edges)
            p->edges = edges;
        double *rewards = PyMem_Realloc(p->rewards, sizeof(double) * cap);
        if (rewards)
            p->rewards = rewards;
        if (!nodes || !edges || !rewards) {
            PyErr_NoMemory();
            return -1;
        }
        p->cap = cap;
    }
    p->edges[p->len] = e;
    p->rewards[p->len] = reward;
    p->nodes[++p->len] = child;
    return 0;
}

/* engine.value(node) as a double (-1 and an exception on error) */
static int call_value(PyObject *engine, long node, double *out) {
    PyObject *v = PyObject_CallMethod(engine, "value", "l", node);
    if (!v)
        return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* info.get(name): a new reference, or NULL without an error when absent */
static PyObject *info_get(PyObject *info, PyObject *name) { /* None counts as absent, as is_success reads it */
    if (PyDict_CheckExact(info)) {
        PyObject *v = PyDict_GetItemWithError(info, name);
        return v && v != Py_None ? Py_NewRef(v) : NULL;
    }
    PyObject *v = PyObject_CallMethod(info, "get", "O", name);
    if (v == Py_None) {
        Py_DECREF(v);
        return NULL;
    }
    return v;
}

/* The engine's _step for a tree-mode edge without the solver: env.step, then what
 * SearchGraph._place records for a fixed transition; a sampled one (or any other case)
 * goes to engine._place. */
static int step_edge(PyObject *engine, Ctx *x, long node, Py_ssize_t e, long *child_out, double *reward_out) {
    PyObject *nodes = x->h[H_NODES], *edges = x->h[H_EDGES];
    PyObject *state = PyList_GET_ITEM(PyTuple_GET_ITEM(nodes, N_STATE), node);
    PyObject *action = PyList_GET_ITEM(PyTuple_GET_ITEM(edges, X_ACTION), e);
    PyObject *step = PyObject_CallFunctionObjArgs(x->h[H_ENV_STEP], state, action, x->h[H_RNG], NULL);
    if (!step)
        return -1;
    PyObject *got = NULL, *r = NULL, *term = NULL, *trunc = NULL, *info = NULL, *next = NULL, *flag = NULL;
    int rc = -1;
    if (x->solver || geti(x->l[L_CHILD], e) != UNSTEPPED) { /* proofs and bounds, or a sampled edge */
        got = PyObject_CallMethod(engine, "_place", "lnO", node, e, step);
        goto placed;
    }
    if (!(r = PyObject_GetAttr(step, S_reward)) || !(term = PyObject_GetAttr(step, S_terminated)) ||
        !(trunc = PyObject_GetAttr(step, S_truncated)) || !(info = PyObject_GetAttr(step, S_info)))
        goto done;
    double reward = PyFloat_AsDouble(r);
    if (reward == -1.0 && PyErr_Occurred())
        goto done;
    int terminated = PyObject_IsTrue(term);
    int end = terminated > 0 ? 1 : PyObject_IsTrue(trunc);
    if (terminated < 0 || end < 0)
        goto done;
    if (terminated) { /* is_success */
        int solution = flag_of(engine, S_solution);
        if (solution < 0)
            goto done;
        if (!solution) {
            flag = info_get(info, S_success);
            if (PyErr_Occurred())
                goto done;
            int ok = flag ? PyObject_IsTrue(flag) : reward >= 1.0;
            if (ok < 0 || (ok && PyObject_SetAttr(engine, S_solution, Py_True) < 0))
                goto done;
            Py_CLEAR(flag);
        }
    }
    int fixed = x->det;
    if (!fixed) {
        flag = info_get(info, S_deterministic);
        if (PyErr_Occurred())
            goto done;
        fixed = flag ? PyObject_IsTrue(flag) : 0;
        if (fixed < 0)
            goto done;
    }
    if (!fixed) {
        got = PyObject_CallMethod(engine, "_place", "lnO", node, e, step);
        goto placed;
    }
    PyObject *rows = PyObject_GetAttr(engine, S_rows);
    if (!rows)
        goto done;
    long nrows = PyLong_AsLong(rows);
    Py_DECREF(rows);
    if (nrows == -1 && PyErr_Occurred())
        goto done;
    PyObject *rows1 = PyLong_FromLong(nrows + 1);
    if (!rows1 || PyObject_SetAttr(engine, S_rows, rows1) < 0) {
        Py_XDECREF(rows1);
        goto done;
    }
    Py_DECREF(rows1);
    if (!(next = PyObject_GetAttr(step, S_state)))
        goto done;
    Py_ssize_t child = append_node(nodes, next, end, Py_None);
    if (child < 0 || seti(x->l[L_CHILD], e, (long)child) < 0)
        goto done;
    PyObject *rw = PyFloat_FromDouble(reward);
    if (!rw || PyList_SetItem(x->l[L_REWARD], e, rw) < 0)
        goto done;
    *child_out = (long)child;
    *reward_out = reward;
    rc = 0;
    goto done;
placed:
    if (got) {
        if (PyTuple_Check(got) && PyTuple_GET_SIZE(got) == 2) {
            *child_out = PyLong_AsLong(PyTuple_GET_ITEM(got, 0));
            *reward_out = PyFloat_AsDouble(PyTuple_GET_ITEM(got, 1));
            rc = PyErr_Occurred() ? -1 : 0;
        } else {
            PyErr_SetString(PyExc_TypeError, "_core: _place must return (child, reward)");
        }
    }
done:
    Py_DECREF(step);
    Py_XDECREF(got);
    Py_XDECREF(r);
    Py_XDECREF(term);
    Py_XDECREF(trunc);
    Py_XDECREF(info);
    Py_XDECREF(next);
    Py_XDECREF(flag);
    return rc;
}

/* hook(arg): its result, checked to be a sequence of one item; that item (new reference) */
static PyObject *one_of(Ctx *x, PyObject *result, const char *what, const char *unit) {
    if (!result)
        return NULL;
    Py_ssize_t n = PyObject_Length(result);
    if (n != 1) {
        if (n >= 0)
            PyErr_Format(x->h[H_ERROR], "%s hook returned %zd %s for 1 states", what, n, unit);
        Py_DECREF(result);
        return NULL;
    }
    PyObject *item = PySequence_GetItem(result, 0);
    Py_DECREF(result);
    return item;
}

/* hook([state]) or hook([state], k): the batch hook called on one state */
static PyObject *call_on_one(PyObject *hook, PyObject *state, PyObject *k) {
    PyObject *batch = PyList_New(1);
    if (!batch)
        return NULL;
    PyList_SET_ITEM(batch, 0, Py_NewRef(state));
    PyObject *got = PyObject_CallFunctionObjArgs(hook, batch, k, NULL);
    Py_DECREF(batch);
    return got;
}

/* The expansion of a new leaf by one propose call (as _Engine._expand_and_evaluate for one leaf): 1 when that
 * settled its value (*out: V* of a proof, 0 for a dead end), 0 when it needs evaluating. */
static int expand_leaf(PyObject *engine, Ctx *x, long node, PyObject *state, double *out) {
    PyObject *props = NULL;
    double uniform = NAN;
    if (x->h[H_LEGAL] != Py_None && !x->eager) { /* uniform_propose, without its tuples */
        if (!(props = PyObject_CallOneArg(x->h[H_LEGAL], state)))
            return -1;
        if (PyList_CheckExact(props) && PyList_GET_SIZE(props) > 0)
            uniform = 1.0 / (double)PyList_GET_SIZE(props);
        else
            Py_CLEAR(props); /* open-text (None) or a dead end: the hook says what to do */
    }
    if (!props && !(props = one_of(x, call_on_one(x->h[H_PROPOSE], state, x->h[H_K]), "a propose", "lists")))
        return -1;
    int r;
    if (!isnan(uniform) || (x->trusted && !x->eager && PyList_CheckExact(props) && PyList_GET_SIZE(props) > 0)) {
        r = expand_edges(x->h[H_EDGES], node, props, x->h[H_DRAW], uniform);
    } else {
        PyObject *v = PyObject_CallMethod(engine, "_expand", "lO", node, props);
        r = v ? 0 : -1;
        Py_XDECREF(v);
    }
    Py_DECREF(props);
    if (r < 0)
        return -1;
    PyObject *solved = PyList_GET_ITEM(x->l[L_SOLVED], node);
    if (solved != Py_None) { /* proven on expansion */
        *out = PyFloat_AsDouble(solved);
        return PyErr_Occurred() ? -1 : 1;
    }
    int term = PyObject_IsTrue(PyList_GET_ITEM(PyTuple_GET_ITEM(x->h[H_NODES], N_TERM), node));
    *out = 0.0;
    return term; /* a dead end is worth 0; -1 on error */
}

/* _Engine._expand_and_evaluate for one leaf: expand a new leaf, then its value by one evaluate call unless the
 * expansion settled it; the evaluation is counted in the node's n_eval_sum / n_eval_n */
static int leaf_value(PyObject *engine, Ctx *x, long node, int is_new, double *out) {
    PyObject *nodes = x->h[H_NODES];
    PyObject *state = PyList_GET_ITEM(PyTuple_GET_ITEM(nodes, N_STATE), node);
    if (is_new) {
        int settled = expand_leaf(engine, x, node, state, out);
        if (settled != 0)
            return settled < 0 ? -1 : 0;
    }
    PyObject *got, *ro = x->h[H_ROLLOUT];
    if (ro != Py_None) /* random_rollout: the env's playout, called directly */
        got = PyObject_CallFunctionObjArgs(PyTuple_GET_ITEM(ro, 0), state, PyTuple_GET_ITEM(ro, 1),
                                           PyTuple_GET_ITEM(ro, 2), PyTuple_GET_ITEM(ro, 3), PyTuple_GET_ITEM(ro, 4),
                                           NULL);
    else
        got = one_of(x, call_on_one(x->h[H_EVALUATE], state, NULL), "an evaluate", "values");
    if (!got)
        return -1;
    PyObject *f = PyNumber_Float(got); /* float(value), as the Python path */
    Py_DECREF(got);
    if (!f)
        return -1;
    double v = PyFloat_AS_DOUBLE(f);
    Py_DECREF(f);
    PyObject *sum_list = PyTuple_GET_ITEM(nodes, N_EVAL_SUM);
    PyObject *sum = PyFloat_FromDouble(getf(sum_list, node) + v);
    if (!sum || PyList_SetItem(sum_list, node, sum) < 0 || incr(x->l[L_EVAL_N], node) < 0)
        return -1;
    *out = v;
    return 0;
}

/* One descent, as _Engine._descend_py in tree mode: 1 with the path filled in, 0 when
 * the root has no action left to search, -1 on error. */
static int descend_path(PyObject *engine, Ctx *x, Path *p) {
    PyObject *n_visits = x->l[L_VISITS], *n_start = x->l[L_START], *n_count = x->l[L_COUNT];
    PyObject *n_next = x->l[L_NEXT], *n_off = x->l[L_OFF], *e_n = x->l[L_EN], *e_w = x->l[L_EW];
    PyObject *e_child = x->l[L_CHILD], *e_reward = x->l[L_REWARD], *n_eval_n = x->l[L_EVAL_N];
    long node = 0;
    Py_ssize_t depth = 0;
    p->len = 0;
    p->nodes[0] = 0;
    p->value = 0.0;
    for (;;) {
        long s = geti(n_start, node);
        if (s < 0 && s != UNSTEPPED) { /* terminal or dead end */
            if (node == 0)
                return 0;
            p->how = D_TERMINAL;
            return incr(n_visits, node) < 0 ? -1 : 1;
        }
        if (depth >= x->max_depth) { /* a leaf, not expanded further */
            if (incr(n_visits, node) < 0)
                return -1;
            if (s == UNSTEPPED && geti(n_eval_n, node) == 0) {
                p->how = D_EVAL;
                return 1;
            }
            p->how = D_VALUED;
            return call_value(engine, node, &p->value) < 0 ? -1 : 1;
        }
        if (s == UNSTEPPED) {
            p->how = D_NEW;
            return incr(n_visits, node) < 0 ? -1 : 1;
        }
        long k = geti(n_next, node), cnt = geti(n_count, node);
        Py_ssize_t e;
        if (x->uct && k < cnt) { /* each edge once, in turn from a random one */
            if (seti(n_next, node, k + 1) < 0)
                return -1;
            k += geti(n_off, node);
            e = s + (k < cnt ? k : k - cnt);
        } else if (x->plain) {
            long parent_n = geti(n_visits, node);
            double explore = uct_explore(x->c, parent_n);
            double best = -INFINITY;
            e = s;
            for (Py_ssize_t i = s; i < s + cnt; i++) {
                double score = uct_score(e_w, i, geti(e_n, i), explore);
                if (score > best) {
                    best = score;
                    e = i;
                }
            }
        } else {
            e = select_edge(x, s, s + cnt, geti(n_visits, node));
        }
        long child = e >= 0 ? geti(e_child, e) : UNSTEPPED;
        double reward;
        if (child >= 0) {
            reward = getf(e_reward, e);
        } else {
            int stop = e < 0;
            if (!stop && child == UNSTEPPED) {
                PyObject *rows = PyObject_GetAttr(engine, S_rows);
                if (!rows)
                    return -1;
                long r = PyLong_AsLong(rows);
                Py_DECREF(rows);
                if (r >= x->max_nodes) {
                    if (PyObject_SetAttr(engine, S_full, Py_True) < 0)
                        return -1;
                    stop = 1;
                }
            }
            if (stop) {
                if (node == 0)
                    return 0;
                if (incr(n_visits, node) < 0)
                    return -1;
                p->how = D_VALUED;
                return call_value(engine, node, &p->value) < 0 ? -1 : 1;
            }
            if (step_edge(engine, x, node, e, &child, &reward) < 0)
                return -1;
        }
        if (PyErr_Occurred())
            return -1;
        if (incr(n_visits, node) < 0 || incr(e_n, e) < 0 || path_push(p, e, reward, child) < 0)
            return -1;
        depth++;
        node = child;
    }
}

/* the path as the Python engine's descent: [nodes, edges, rewards, how, value] */
static PyObject *path_list(Path *p) {
    PyObject *nodes = PyList_New(p->len + 1), *edges = PyList_New(p->len), *rewards = PyList_New(p->len);
    PyObject *out = PyList_New(5);
    if (!nodes || !edges || !rewards || !out)
        goto fail;
    for (Py_ssize_t i = 0; i <= p->len; i++) {
        PyObject *o = PyLong_FromLong(p->nodes[i]);
        if (!o)
            goto fail;
        PyList_SET_ITEM(nodes, i, o);
    }
    for (Py_ssize_t i = 0; i < p->len; i++) {
        PyObject *e = PyLong_FromSsize_t(p->edges[i]), *r = PyFloat_FromDouble(p->rewards[i]);
        if (!e || !r) {
            Py_XDECREF(e);
            Py_XDECREF(r);
            goto fail;
        }
        PyList_SET_ITEM(edges, i, e);
        PyList_SET_ITEM(rewards, i, r);
    }
    PyObject *how = PyLong_FromLong(p->how), *value = PyFloat_FromDouble(p->value);
    if (!how || !value) {
        Py_XDECREF(how);
        Py_XDECREF(value);
        goto fail;
    }
    PyList_SET_ITEM(out, 0, nodes);
    PyList_SET_ITEM(out, 1, edges);
    PyList_SET_ITEM(out, 2, rewards);
    PyList_SET_ITEM(out, 3, how);
    PyList_SET_ITEM(out, 4, value);
    return out;
fail:
    Py_XDECREF(nodes);
    Py_XDECREF(edges);
    Py_XDECREF(rewards);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *descend(PyObject *self, PyObject *args) {
    PyObject *engine, *lists, *params, *hooks;
    if (!PyArg_ParseTuple(args, "OO!O!O!", &engine, &PyTuple_Type, &lists, &PyTuple_Type, &params, &PyTuple_Type,
                          &hooks))
        return NULL;
    Ctx x;
    Path p;
    if (unpack(lists, params, hooks, &x) < 0 || path_init(&p) < 0)
        return NULL;
    int r = descend_path(engine, &x, &p);
    PyObject *out = r < 0 ? NULL : r == 0 ? Py_NewRef(Py_None) : path_list(&p);
    path_free(&p);
    return out;
}

static int backup_path(PyObject *e_w, Path *p, double gamma, double g) {
    for (Py_ssize_t i = p->len - 1; i >= 0; i--) {
        g = p->rewards[i] + gamma * g;
        PyObject *v = PyFloat_FromDouble(getf(e_w, p->edges[i]) + g);
        if (!v || PyList_SetItem(e_w, p->edges[i], v) < 0)
            return -1;
    }
    return 0;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* run(engine, lists, params, hooks, simulations, stop_on_solve, timeout, gamma) -> (done, waves, stop):
 * the wave loop of _Engine.run for wave_size 1 in tree mode: descend, value the leaf
 * (as engine._expand_and_evaluate), back up, prove (engine._prove_up), check the stops in the same
 * order. stop: 0 budget, 1 exhausted, 2 max_nodes, 3 solved, 4 timeout. */
static PyObject *run(PyObject *self, PyObject *args) {
    PyObject *engine, *lists, *params, *hooks;
    Py_ssize_t sims;
    int stop_on_solve;
    double timeout, gamma; /* timeout: seconds left from now (the task's budget less its setup), < 0: none */
    if (!PyArg_ParseTuple(args, "OO!O!O!npdd", &engine, &PyTuple_Type, &lists, &PyTuple_Type, &params,
                          &PyTuple_Type, &hooks, &sims, &stop_on_solve, &timeout, &gamma))
        return NULL;
    Ctx x;
    Path p;
    if (unpack(lists, params, hooks, &x) < 0 || path_init(&p) < 0)
        return NULL;
    Py_ssize_t done = 0, waves = 0;
    int stop = 0, err = 0;
    double t0 = now_seconds();
    while (done < sims) {
        int r = descend_path(engine, &x, &p);
        if (r < 0) {
            err = 1;
            break;
        }
        if (r == 0) {
            int full = flag_of(engine, S_full);
            err = full < 0;
            stop = full > 0 ? 2 : 1;
            break;
        }
        waves++;
        if ((p.how == D_NEW || p.how == D_EVAL) && leaf_value(engine, &x, p.nodes[p.len], p.how == D_NEW, &p.value) < 0) {
            err = 1;
            break;
        }
        if (backup_path(x.l[L_EW], &p, gamma, p.value) < 0) {
            err = 1;
            break;
        }
        if (x.solver) {
            PyObject *nodes = PyList_New(p.len + 1);
            if (!nodes) {
                err = 1;
                break;
            }
            for (Py_ssize_t i = 0; i <= p.len; i++) {
                PyObject *o = PyLong_FromLong(p.nodes[i]);
                if (!o) {
                    err = 1;
                    break;
                }
                PyList_SET_ITEM(nodes, i, o);
            }
            if (err) {
                Py_DECREF(nodes);
                break;
            }
            PyObject *r2 = PyObject_CallMethod(engine, "_prove_up", "O", nodes);
            Py_DECREF(nodes);
            if (!r2) {
                err = 1;
                break;
            }
            Py_DECREF(r2);
        }
        done++;
        if (stop_on_solve) {
            int solved = flag_of(engine, S_solution);
            if (solved) {
                err = solved < 0;
                stop = 3;
                break;
            }
        }
        int full = flag_of(engine, S_full);
        if (full) {
            err = full < 0;
            stop = 2;
            break;
        }
        if (PyErr_CheckSignals() < 0) { /* Ctrl-C between simulations, even if no Python code ran */
            err = 1;
            break;
        }
        if (timeout >= 0 && now_seconds() - t0 > timeout) {
            stop = 4;
            break;
        }
    }
    path_free(&p);
    if (err)
        return NULL;
    return Py_BuildValue("nni", done, waves, stop);
}

/* gather(values, index, kind) -> bytearray: values[i] for each int64 i of the buffer index, packed
 * as kind 'd' (float64), 'q' (int64) or '?' (bool, one byte); the export wraps it with
 * numpy.frombuffer. One pass in C instead of numpy converting the whole list. */
static PyObject *gather(PyObject *self, PyObject *args) {
    PyObject *values;
    Py_buffer idx;
    int kind;
    if (!PyArg_ParseTuple(args, "O!y*C", &PyList_Type, &values, &idx, &kind))
        return NULL;
    Py_ssize_t n = idx.len / (Py_ssize_t)sizeof(long long), size = kind == '?' ? 1 : 8;
    PyObject *out = NULL;
    if (idx.len % (Py_ssize_t)sizeof(long long) || (kind != 'd' && kind != 'q' && kind != '?')) {
        PyErr_SetString(PyExc_ValueError, "_core.gather: an int64 index and kind 'd', 'q' or '?'");
        goto done;
    }
    if (!(out = PyByteArray_FromStringAndSize(NULL, n * size)))
        goto done;
    const long long *ix = idx.buf;
    char *dst = PyByteArray_AS_STRING(out);
    Py_ssize_t len = PyList_GET_SIZE(values);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ix[i] < 0 || ix[i] >= len) {
            PyErr_SetString(PyExc_IndexError, "_core.gather: index out of range");
            Py_CLEAR(out);
            goto done;
        }
        PyObject *v = PyList_GET_ITEM(values, ix[i]);
        if (kind == 'd') {
            double d = PyFloat_CheckExact(v) ? PyFloat_AS_DOUBLE(v) : PyFloat_AsDouble(v);
            memcpy(dst + 8 * i, &d, 8);
        } else if (kind == 'q') {
            long long q = PyLong_AsLongLong(v);
            memcpy(dst + 8 * i, &q, 8);
        } else {
            int b = PyObject_IsTrue(v);
            dst[i] = (char)(b > 0);
            if (b < 0)
                break;
        }
        if (PyErr_Occurred())
            break;
    }
    if (PyErr_Occurred())
        Py_CLEAR(out);
done:
    PyBuffer_Release(&idx);
    return out;
}

static PyMethodDef methods[] = {
    {"gather", gather, METH_VARARGS, "gather(values, index, kind) -> bytearray of values[index] (export)."},
    {"new_node", new_node, METH_VARARGS, "new_node(lists, state, terminal, solved) -> id: append a node."},
    {"expand", expand, METH_VARARGS, "expand(lists, node, proposals, draw): append a node's edges."},
    {"run", run, METH_VARARGS, "run(engine, lists, params, hooks, sims, stop_on_solve, timeout, gamma)."},
    {"descend", descend, METH_VARARGS, "descend(engine, lists, params, hooks): one tree-mode descent."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_core", "treeq's compiled tree-search hot path.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__core(void) {
    PyObject **names[] = {&S_rows, &S_full,       &S_solution, &S_reward,  &S_terminated,
                          &S_truncated, &S_info, &S_state, &S_success, &S_deterministic};
    const char *texts[] = {"rows",      "full", "solution", "reward",  "terminated",
                           "truncated", "info", "state",    "success", "deterministic"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        if (!(*names[i] = PyUnicode_InternFromString(texts[i])))
            return NULL;
    return PyModule_Create(&module);
}
