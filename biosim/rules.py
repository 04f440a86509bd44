"""Agent rules: per-agent functions in numba's Python subset, compiled into
the engine's own parallel loop (tier 2 of the behaviour model).

    @bs.agent_rule(reads=("diameter",), writes=("age",), columns={"age": ("float64", 0.0)})
    def ageing(a, ctx):
        a.age += ctx.dt
        if a.age > 600.0 and ctx.uniform(0) < 0.01:
            a.die()

    tumour.behaviours += [ageing]

Inside a rule, ``a.<column>`` reads or writes this agent's value of a column
declared in ``reads`` or ``writes`` (``a.position`` is a 3-vector: use
``a.position[0]``...); ``a.uid`` is its uid; ``a.divide()`` queues its
division (50/50, random axis, as GrowthDivision) and ``a.die()`` its death.
On a neurite element (:mod:`biosim.neurites`), ``a.elongate(distance, dx,
dy, dz)``, ``a.retract(distance)``, ``a.bifurcate()`` and ``a.branch()``
request those tree operations (distances in µm; the last call of a pass
wins); they are applied after the pass, in uid order, as
``sim.neurites.elongate``... (``bifurcate`` and ``branch`` in random
directions, BioDynaMo's defaults).
``ctx.dt``, ``ctx.step`` and ``ctx.time`` give the rule's interval (min),
the step and the time (min); ``ctx.uniform(k)`` and ``ctx.normal(k)`` draw
the k-th counter-based random number of this agent, step and rule.

Neighbours: ``for n in ctx.neighbours(radius):`` visits every other agent
closer than ``radius`` µm (a number or module constant; all populations),
in a fixed order; ``n.distance``, ``n.dx``/``n.dy``/``n.dz`` (µm, from this
agent to the neighbour, minimum image in a periodic box), ``n.uid`` and
``n.<column>`` for declared columns are read-only.

Substances: ``ctx.concentration("oxygen")`` and ``ctx.gradient("oxygen")``
(a tuple gx, gy, gz per µm) interpolate trilinearly at the agent's centre
(the gradient from central differences at the voxel centres, as
``Substance.sample``);
``ctx.secrete("oxygen", rate)`` releases ``rate`` (amount per minute) into
its voxel over the interval (applied with the substance phase, summed per
voxel in a fixed order).

The rule's source is checked when it is added to a population: any other
use of the agent (another attribute, writing a column not in ``writes``,
reading one in neither list, passing ``a`` elsewhere) is refused with a
clear error, so a rule can only touch its own agent's declared columns.  The
body may use numba's Python subset: arithmetic, ``math`` and numpy scalar
functions, ``if``/``for``/``while``, local variables, module-level constants.
If numba cannot compile it, the error names the rule and gives numba's
message.
"""
import ast
import inspect
import math
import textwrap

import numpy as np
from numba import njit

from .behaviour import Behaviour, divide_rows, live_types
from .kernels.cpu.diffusion import gradient_at_row, value_at_row

_GRID = ["_cell_start", "_order", "_lower", "_inv_h", "_dims", "_length", "_periodic"]
_CTX_VALUES = {"dt": "_dt", "step": "_step", "time": "_time"}
_CTX_DRAWS = {"uniform": "_uniform", "normal": "_normal"}


class RuleError(ValueError):
    pass


# methods of a neurite element in a rule: name -> (request code, number of arguments)
NEURITE_METHODS = {"elongate": (1, 4), "retract": (2, 1), "bifurcate": (3, 0), "branch": (4, 0)}
NEURITE_ARGS = {"elongate": ("distance µm", "dx", "dy", "dz"), "retract": ("distance µm",), "bifurcate": (),
                "branch": ()}


class _Rewrite(ast.NodeTransformer):
    """``a.col`` -> ``_c_col[_i]``, ``ctx.dt`` -> ``_dt``, draws, divide/die."""

    def __init__(self, rule, agent, ctx, readable, writable, env):
        self.rule, self.agent, self.ctx = rule, agent, ctx
        self.readable, self.writable = readable, writable
        self.env = env
        self.used = set()
        self.nb_used = set()    # columns read from neighbours
        self.substances = []    # substance names used, in order of first use
        self.nb = None          # name of the neighbour loop variable, inside such a loop
        self.radius = None      # largest neighbour radius used (µm)
        self.neurite = False    # uses a neurite method (a.elongate(...) ...)

    def _fail(self, node, msg):
        raise RuleError(f"agent rule {self.rule!r}, line {getattr(node, 'lineno', '?')}: {msg}")

    def _is(self, node, name):
        return isinstance(node, ast.Name) and node.id == name

    def _target_column(self, target):
        while isinstance(target, ast.Subscript):
            target = target.value
        if isinstance(target, ast.Attribute) and self._is(target.value, self.agent):
            return target.attr
        return None

    def _check_write(self, targets, node):
        for t in targets:
            col = self._target_column(t)
            if col is not None and col not in self.writable:
                self._fail(node, f"writes {self.agent}.{col}, which is not in writes={sorted(self.writable)}")

    def visit_Assign(self, node):
        self._check_write(node.targets, node)
        return self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._check_write([node.target], node)
        col = self._target_column(node.target)
        if col is not None and col not in self.readable | self.writable:
            self._fail(node, f"reads {self.agent}.{col} (+=), which is not declared")
        return self.generic_visit(node)

    def visit_For(self, node):
        it = node.iter
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute)
                and self._is(it.func.value, self.ctx) and it.func.attr == "neighbours"):
            return self.generic_visit(node)
        if self.nb is not None:
            self._fail(node, "neighbour loops cannot be nested")
        if not isinstance(node.target, ast.Name) or len(it.args) != 1 or it.keywords or node.orelse:
            self._fail(node, f"write neighbour loops as: for n in {self.ctx}.neighbours(radius): ...")
        try:
            radius = float(eval(compile(ast.Expression(it.args[0]), "<radius>", "eval"), dict(self.env)))
        except Exception:
            self._fail(node, "the radius of ctx.neighbours(radius) must be a number or a module-level constant")
        if not radius > 0 or radius != radius or radius == float("inf"):
            self._fail(node, f"the neighbour radius must be a finite number > 0 µm, got {radius!r}")
        self.radius = radius if self.radius is None else max(self.radius, radius)
        self.nb = node.target.id
        self.nb_distance = False
        guard = self._hoistable_guard(node)
        body = _visit_block(self, node.body)
        self.nb = None
        body = _visit_block(_Breaks(), body)
        early = []
        if guard:
            # the body is one side-effect-free `if` on the neighbour's columns: test it
            # before the distance, which then is computed only for the neighbours it keeps
            test = body[0].test
            early = [ast.If(test=ast.UnaryOp(op=ast.Not(), operand=test), body=[ast.Continue()], orelse=[])]
            body = body[0].body
        prologue = ast.parse(textwrap.dedent("""
            _j = _order[_q]
            if _j == _i:
                continue
        """)).body + early + ast.parse(textwrap.dedent(f"""
            _ndx = _min_image(_pos[_j, 0] - _pos[_i, 0], _length[0], _periodic[0])
            _ndy = _min_image(_pos[_j, 1] - _pos[_i, 1], _length[1], _periodic[1])
            _ndz = _min_image(_pos[_j, 2] - _pos[_i, 2], _length[2], _periodic[2])
            _nd2 = _ndx * _ndx + _ndy * _ndy + _ndz * _ndz
            if _nd2 >= {radius * radius!r}:
                continue
        """)).body
        if self.nb_distance:
            prologue += ast.parse("_nd = _sqrt(_nd2)").body
        # the grid walk: runs of cell members around the agent, in a fixed order
        loop = ast.parse(textwrap.dedent(f"""
            _brk = False
            _m = _stencil_runs(_pos[_i, 0], _pos[_i, 1], _pos[_i, 2], _cell_start, _lower, _inv_h, _dims,
                               _periodic, {radius!r}, _runs)
            for _r in range(_m):
                for _q in range(_runs[2 * _r], _runs[2 * _r + 1]):
                    pass
                if _brk:
                    break
        """)).body
        loop[2].body[0].body = prologue + body
        return [ast.copy_location(stmt, node) for stmt in loop]

    def _hoistable_guard(self, node):
        """True when a neighbour loop's body is a single ``if`` without ``else``
        whose test only reads (no calls, no distance or direction), so it
        can run before the distance check."""
        if len(node.body) != 1 or not isinstance(node.body[0], ast.If) or node.body[0].orelse:
            return False
        for sub in ast.walk(node.body[0].test):
            if isinstance(sub, (ast.Call, ast.NamedExpr, ast.Await, ast.Yield, ast.Lambda)):
                return False
            if (isinstance(sub, ast.Attribute) and self._is(sub.value, self.nb)
                    and sub.attr in ("distance", "dx", "dy", "dz")):
                return False
        return True

    def _substance(self, node, call, nargs):
        if (len(call.args) != nargs or call.keywords or not isinstance(call.args[0], ast.Constant)
                or not isinstance(call.args[0].value, str)):
            self._fail(node, f"{self.ctx}.{call.func.attr}(...) takes a substance name as a string literal"
                             + (" and a rate" if nargs == 2 else ""))
        name = call.args[0].value
        if name not in self.substances:
            self.substances.append(name)
        return self.substances.index(name)

    def _here(self, k):
        return [ast.Name(f"{p}{k}", ast.Load()) for p in ("_g", "_gs", "_gl", "_gh", "_gp")] + [
            ast.Name("_pos", ast.Load()), ast.Name("_i", ast.Load())]

    def visit_Expr(self, node):
        call = node.value
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and self._is(call.func.value, self.ctx) and call.func.attr == "secrete"):
            k = self._substance(node, call, 2)
            rate = self.visit(call.args[1])
            target = ast.Subscript(value=ast.Name(f"_sec{k}", ast.Load()), slice=ast.Name("_i", ast.Load()),
                                   ctx=ast.Store())
            return ast.copy_location(ast.AugAssign(target=target, op=ast.Add(), value=ast.BinOp(
                left=rate, op=ast.Mult(), right=ast.Name("_dt", ast.Load()))), node)
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and self._is(call.func.value, self.agent) and call.func.attr in NEURITE_METHODS):
            return self._neurite_request(node, call)
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and self._is(call.func.value, self.agent) and call.func.attr in ("divide", "die")):
            if call.args or call.keywords:
                self._fail(node, f"{self.agent}.{call.func.attr}() takes no arguments")
            flag = "_divide" if call.func.attr == "divide" else "_die"
            return ast.copy_location(ast.Assign(
                targets=[ast.Subscript(value=ast.Name(flag, ast.Load()), slice=ast.Name("_i", ast.Load()),
                                       ctx=ast.Store())],
                value=ast.Constant(True)), node)
        return self.generic_visit(node)

    def _neurite_request(self, node, call):
        """``a.elongate(distance, dx, dy, dz)``, ``a.retract(distance)``,
        ``a.bifurcate()``, ``a.branch()``: the request's code and arguments
        written into this agent's row of the request columns (applied after
        the pass, in uid order: see AgentRule.run)."""
        name = call.func.attr
        code, nargs = NEURITE_METHODS[name]
        if len(call.args) != nargs or call.keywords:
            self._fail(node, f"{self.agent}.{name}() takes {nargs} positional arguments "
                             f"({', '.join(NEURITE_ARGS[name]) or 'none'}), got {ast.unparse(call)}")
        self.used.update(("neurite_request", "neurite_arg"))
        self.neurite = True
        i = ast.Name("_i", ast.Load())
        stmts = [ast.Assign(targets=[ast.Subscript(value=ast.Name("_c_neurite_request", ast.Load()), slice=i,
                                                   ctx=ast.Store())], value=ast.Constant(code))]
        for k, arg in enumerate(call.args):
            stmts.append(ast.Assign(targets=[ast.Subscript(
                value=ast.Name("_c_neurite_arg", ast.Load()),
                slice=ast.Tuple(elts=[i, ast.Constant(k)], ctx=ast.Load()), ctx=ast.Store())],
                value=self.visit(arg)))
        return [ast.copy_location(st, node) for st in stmts]

    def visit_Call(self, node):
        f = node.func
        if isinstance(f, ast.Attribute) and self._is(f.value, self.ctx) and f.attr in _CTX_DRAWS:
            if len(node.args) != 1 or node.keywords:
                self._fail(node, f"{self.ctx}.{f.attr}(k) takes one argument, the draw index k")
            arg = self.visit(node.args[0])
            return ast.copy_location(ast.Call(
                func=ast.Name(_CTX_DRAWS[f.attr], ast.Load()),
                args=[ast.Name(n, ast.Load()) for n in ("_seed", "_uid", "_step", "_stream")] + [arg],
                keywords=[]), node)
        if isinstance(f, ast.Attribute) and self._is(f.value, self.ctx) and f.attr in ("concentration", "gradient"):
            k = self._substance(node, node, 1)
            fn = "_value_here" if f.attr == "concentration" else "_gradient_here"
            return ast.copy_location(ast.Call(func=ast.Name(fn, ast.Load()), args=self._here(k), keywords=[]), node)
        if isinstance(f, ast.Attribute) and self._is(f.value, self.ctx) and f.attr == "secrete":
            self._fail(node, f"{self.ctx}.secrete(name, rate) is a statement of its own")
        if isinstance(f, ast.Attribute) and self._is(f.value, self.agent):
            self._fail(node, f"{self.agent}.{f.attr}() is not available (divide(), die(), and on neurite elements "
                             f"{', '.join(f'{m}()' for m in NEURITE_METHODS)}) or is not a statement of its own")
        return self.generic_visit(node)

    def visit_Attribute(self, node):
        if self.nb is not None and self._is(node.value, self.nb):
            attr = node.attr
            if isinstance(node.ctx, ast.Store):
                self._fail(node, f"{self.nb}.{attr}: a rule may not write another agent's columns")
            simple = {"distance": "_nd", "dx": "_ndx", "dy": "_ndy", "dz": "_ndz"}
            if attr == "distance":
                self.nb_distance = True
            if attr in simple:
                return ast.copy_location(ast.Name(simple[attr], ast.Load()), node)
            if attr == "uid":
                return ast.copy_location(ast.Subscript(value=ast.Name("_uids", ast.Load()),
                                                       slice=ast.Name("_j", ast.Load()), ctx=ast.Load()), node)
            if attr not in self.readable | self.writable:
                self._fail(node, f"{self.nb}.{attr} is not a declared column (reads={sorted(self.readable)}); "
                                 f"neighbours also have distance, dx, dy, dz and uid")
            self.nb_used.add(attr)
            return ast.copy_location(ast.Subscript(value=ast.Name(f"_n_{attr}", ast.Load()),
                                                   slice=ast.Name("_j", ast.Load()), ctx=ast.Load()), node)
        if self._is(node.value, self.agent):
            col = node.attr
            if col == "uid":
                if isinstance(node.ctx, ast.Store):
                    self._fail(node, "the uid cannot be written")
                return ast.copy_location(ast.Name("_uid", ast.Load()), node)
            if col not in self.readable | self.writable:
                self._fail(node, f"{self.agent}.{col} is not a declared column (reads={sorted(self.readable)}, "
                                 f"writes={sorted(self.writable)})")
            self.used.add(col)
            return ast.copy_location(ast.Subscript(value=ast.Name(f"_c_{col}", ast.Load()),
                                                   slice=ast.Name("_i", ast.Load()), ctx=node.ctx), node)
        if self._is(node.value, self.ctx):
            if node.attr not in _CTX_VALUES:
                self._fail(node, f"{self.ctx}.{node.attr} is not available (dt, step, time, uniform(k), normal(k), "
                                 f"neighbours(r), concentration(name), gradient(name), secrete(name, rate))")
            return ast.copy_location(ast.Name(_CTX_VALUES[node.attr], ast.Load()), node)
        return self.generic_visit(node)

    def visit_Return(self, node):
        if node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            self._fail(node, f"a rule returns nothing (it acts through {self.agent}.<column>, {self.agent}.divide() "
                             f"and {self.agent}.die()); got 'return {ast.unparse(node.value)}'")
        return node

    def visit_Name(self, node):
        if node.id in (self.agent, self.ctx) or (self.nb is not None and node.id == self.nb):
            self._fail(node, f"{node.id!r} may only be used as {node.id}.<name>")
        return node


def _visit_block(visitor, stmts):
    """Visit a list of statements; a visit may return one node or a list."""
    out = []
    for stmt in stmts:
        new = visitor.visit(stmt)
        out.extend(new if isinstance(new, list) else [new])
    return out


class _Breaks(ast.NodeTransformer):
    """``break`` directly in a neighbour loop's body leaves the whole grid walk:
    it becomes ``_brk = True; break`` (nested loops keep their own breaks)."""

    def visit_Break(self, node):
        return [ast.copy_location(ast.parse("_brk = True").body[0], node), node]

    def visit_For(self, node):
        return node

    visit_While = visit_For

    def visit_FunctionDef(self, node):
        return node


class RuleDefinition:
    """What ``@bs.agent_rule`` returns: add it to ``population.behaviours``
    (each population gets its own compiled rule); call it with ``every=k`` to
    run it every k steps."""

    def __init__(self, fn, reads, writes, columns):
        if not callable(fn):
            raise TypeError(f"agent_rule decorates a function (agent, ctx), got {fn!r}")
        self.fn = fn
        self.name = fn.__name__
        self.reads = tuple(reads)
        self.writes = tuple(writes)
        self.columns = dict(columns or {})
        for col in self.reads + self.writes:
            if not isinstance(col, str):
                raise TypeError(f"agent rule {self.name!r}: column names must be strings, got {col!r}")
        for col in ("uid", "type"):
            if col in self.writes:
                raise ValueError(f"agent rule {self.name!r}: column {col!r} cannot be written by a rule")
        self._source = self._translate()

    def _translate(self):
        try:
            src = textwrap.dedent(inspect.getsource(self.fn))
        except (OSError, TypeError):
            raise RuleError(f"agent rule {self.name!r}: its source code is not available (define it in a file "
                            f"or a notebook cell, not with exec/lambda)") from None
        tree = ast.parse(src)
        fdef = next((n for n in tree.body if isinstance(n, ast.FunctionDef)), None)
        if fdef is None or len(fdef.args.args) != 2 or fdef.args.vararg or fdef.args.kwarg:
            raise RuleError(f"agent rule {self.name!r} must be a function of two arguments (agent, ctx)")
        agent, ctx = (a.arg for a in fdef.args.args)
        rw = _Rewrite(self.name, agent, ctx, set(self.reads), set(self.writes), self.fn.__globals__)
        body = _visit_block(rw, fdef.body)
        self._used = sorted(rw.used | set(self.writes))
        self.neurite = rw.neurite
        self._nb_used = sorted(rw.nb_used)
        self.radius = rw.radius
        self.substances = tuple(rw.substances)
        # the grid walk and the columns come as two tuples (_W, _C), unpacked
        # first: a call of more than 30 arguments would reach numba as *args,
        # which it cannot inline
        params = ["_i", "_uid", "_dt", "_step", "_time", "_seed", "_stream", "_divide", "_die", "_uids",
                  "_pos", "_runs", "_W", "_C"]
        unpack = [ast.Assign(targets=[ast.Tuple(elts=[ast.Name(n, ast.Store()) for n in names], ctx=ast.Store())],
                             value=ast.Name(src, ast.Load()))
                  for src, names in (("_W", _GRID), ("_C", self._column_params() + self._grid_params())) if names]
        new = ast.FunctionDef(name="_rule_body", args=ast.arguments(
            posonlyargs=[], args=[ast.arg(p) for p in params], vararg=None, kwonlyargs=[], kw_defaults=[],
            kwarg=None, defaults=[]), body=unpack + body + [ast.Return(value=None)], decorator_list=[],
            returns=None, type_params=[])
        module = ast.Module(body=[new], type_ignores=[])
        ast.fix_missing_locations(module)
        return ast.unparse(module)

    def _column_params(self):
        return [f"_c_{c}" for c in self._used] + [f"_n_{c}" for c in self._nb_used]

    def _grid_params(self):
        return [f"{p}{k}" for k in range(len(self.substances)) for p in ("_g", "_gs", "_gl", "_gh", "_gp", "_sec")]

    def __call__(self, every=1):
        return AgentRule(self, every)

    def __repr__(self):
        return f"agent_rule({self.name!r}, reads={self.reads}, writes={self.writes})"


class AgentRule(Behaviour):
    """A compiled agent rule attached to one population (see module doc).
    On a GPU backend the same generated body runs as a CUDA device
    function, one thread per agent (:mod:`biosim.kernels.cuda.rules`)."""

    device_ready = True

    def __init__(self, definition, every=1):
        super().__init__(every)
        self.definition = definition
        self.writes = definition.writes
        self._kernel = None
        self._gpu_kernel = None

    @property
    def label(self):
        return self.definition.name

    def parameters(self):
        return {"rule": f"{self.definition.fn.__module__}.{self.definition.name}", "every": self.every}

    def search_radius(self, sim):
        return float(self.definition.radius or 0.0)

    def max_move(self, sim, dt):
        if self.definition.neurite:  # a.elongate(distance, ...) moves a tip by a distance only known at run time
            return None
        return super().max_move(sim, dt)

    def attach(self, sim, population):
        d = self.definition
        for col, spec in d.columns.items():
            dtype, default, *inherit = spec if isinstance(spec, tuple) else (spec, 0)
            sim.agents.add_column(col, dtype, default, (), *inherit)
        if d.neurite:
            if sim.neurites is None or population.code not in sim.neurites.types:
                raise ValueError(f"agent rule {d.name!r} calls neurite methods (elongate, retract, bifurcate, "
                                 f"branch): population {population.name!r} is not a neurite population (make one "
                                 f"with sim.add_neurites)")
            sim.agents.add_column("neurite_request", np.int8, 0, (), "default")
            sim.agents.add_column("neurite_arg", np.float64, 0.0, (4,), "default")
        self._subs = [sim.substance(name, who=f"agent rule {d.name!r}") for name in d.substances]
        for col in sorted(set(d._used) | set(d._nb_used)):
            if col not in sim.agents:
                raise ValueError(f"agent rule {d.name!r} uses column {col!r}, which does not exist; columns are "
                                 f"{', '.join(sim.agents.columns)} (declare new ones with "
                                 f"agent_rule(columns={{{col!r}: ('float64', 0.0)}}))")
        derived = [c for c in sorted(d.writes) if c in sim.agents.derived]
        if derived:
            raise ValueError(f"agent rule {d.name!r} writes column {derived[0]!r}, which is derived (computed "
                             f"from stored columns on every read): it cannot be written")
        super().attach(sim, population)
        if not sim.backend.on_device:
            self._kernel = _compile(d)

    def _arguments(self, sim, population, dt, gpu):
        """(head, walk, cols, divide, die, secreted): the kernel's arguments
        where the backend's kernels live.  ``gpu``: the GPU kernel's form
        (the grid's small vectors as tuples, passed by value)."""
        B = sim.backend
        t = sim.agents
        n = len(t)
        d = self.definition
        if d.radius is not None:  # first: building the grid may reorder the rows
            walk = list(sim._neighbour_grid(d.radius).device_args()[1:8])
        else:
            walk = [B.zeros(2, np.int64), B.zeros(1, np.int64 if gpu else np.int32), sim.box.lower, np.zeros(3),
                    np.ones(3, dtype=np.int64), sim.box.length, np.zeros(3, dtype=np.bool_)]
        if gpu:
            walk[2:] = [tuple(float(x) for x in walk[2]), tuple(float(x) for x in walk[3]),
                        tuple(int(x) for x in walk[4]), tuple(float(x) for x in walk[5]),
                        tuple(bool(x) for x in walk[6])]
        pos = t.col("position", "position" in d.writes)
        if d.radius is not None and "position" in d.writes:
            pos = B.copy(pos)  # neighbours are seen where they were at the interval's start
        divide = B.zeros(n, np.bool_)
        die = B.zeros(n, np.bool_)
        cols = [t.col(c, c in d.writes) for c in d._used]
        # neighbours' values of the columns this rule writes come from a copy taken
        # before the pass: every agent sees the interval's start (thread-count independent)
        cols += [B.copy(t.col(c, False)) if c in d.writes else t.col(c, False) for c in d._nb_used]
        secreted = [B.zeros(n, np.float64) for _ in self._subs]
        for sub, sec in zip(self._subs, secreted):
            grid = sub._device_grid(write=False) if B.on_device else sub._c
            lower = tuple(float(x) for x in sub.lower) if gpu else sub.lower
            # the shape: a tuple on the GPU (passed by value); an array on the CPU
            # (numba's parallel loops refuse a tuple nested in the columns' tuple)
            shape = tuple(int(x) for x in sub.shape) if gpu else np.array(sub.shape, dtype=np.int64)
            cols += [grid.reshape(grid.size), shape, lower, sub.spacing, sub.periodic, sec]
        head = (live_types(sim), population.code, n, t.col("uid", False), dt, sim.step, sim.time, sim.seed,
                self.stream, divide, die, pos)
        return head, walk, cols, divide, die, secreted

    def run(self, sim, population, dt):
        t = sim.agents
        n = len(t)
        if n == 0:
            if self.definition.neurite and sim._dd is not None:
                sim.neurites.apply_requests(self.stream)  # a collective call under MPI
            return
        B = sim.backend
        head, walk, cols, divide, die, secreted = self._arguments(sim, population, dt, B.on_device)
        if B.on_device:
            self._run_gpu(sim, head, walk, cols)
        else:
            self._run_cpu(head + (tuple(walk), tuple(cols)))
        for sub, sec in zip(self._subs, secreted):  # amounts released this interval
            rows = B.diffusion.nonzero_values(sec, n)
            if len(rows):
                added = B.empty(len(rows), np.float64)
                B.diffusion.take_divided(sec, rows, sub.voxel_volume, added)
                sub.queue(rows, added=added)
        dead = B.nonzero(die, n)
        if len(dead):
            t.request_deaths(t.take_column("uid", dead))
        dividing = B.nonzero(divide, n)  # the kernel cleared the flag of dying agents
        if len(dividing):
            divide_rows(sim, dividing, self.stream ^ 0x5EED)
        if self.definition.neurite:
            sim.neurites.apply_requests(self.stream)

    def _run_cpu(self, call):
        d = self.definition
        try:
            try:
                self._kernel(*call)
            except Exception as e:
                if not _from_cache_load(e):
                    raise
                # an unreadable cache entry (truncated, garbled): dropped, compiled and cached afresh
                from ._cache import warn_once

                warn_once(f"rule-cache-{d.name}", f"agent rule {d.name!r}: its cached machine code could not be "
                                                  f"read ({type(e).__name__}: {e}); compiling it again")
                self._kernel = _compile(d, disk=_drop_cached(self._kernel))
                self._kernel(*call)
        except Exception as e:  # numba typing/lowering errors surface on the first call
            from numba.core.errors import NumbaError

            if isinstance(e, NumbaError):
                raise TypeError(f"agent rule {d.name!r} could not be compiled by numba:\n{_short(e)}\n"
                                f"(rule body as compiled:\n{d._source})") from None
            raise

    def _gpu_names(self):
        d = self.definition
        return _GRID, d._column_params() + d._grid_params()

    def _run_gpu(self, sim, head, walk, cols):
        R = sim.backend.rules
        d = self.definition
        if self._gpu_kernel is None:
            self._gpu_kernel = R.compile_rule(d._source, d.fn.__globals__, *self._gpu_names(), d.name)
        try:
            R.run(self._gpu_kernel, head[2], head + tuple(walk) + tuple(cols))
        except Exception as e:  # numba-cuda compiles at the first launch
            from numba.core.errors import NumbaError

            if isinstance(e, NumbaError):
                raise _gpu_error(self, sim.device, e, self._cpu_check(sim, head, walk, cols)) from None
            raise

    def _cpu_check(self, sim, head, walk, cols):
        """None if the rule compiles for the CPU, else numba's message (for
        the GPU compile error): its CPU kernel run over no agents on host
        copies of the arguments."""
        from numba.core.errors import NumbaError

        B = sim.backend
        host = [B.to_host(a) if hasattr(a, "copy_to_host") else a for a in head]
        host[2] = 0
        if self.definition.radius is None:
            walk = [np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int32)] + list(walk[2:])
        walk = [B.to_host(a) if hasattr(a, "copy_to_host") else np.asarray(a) for a in walk]
        cols = [B.to_host(a) if hasattr(a, "copy_to_host") else a for a in cols]
        try:
            _compile(self.definition)(*host, tuple(walk), tuple(cols))
        except NumbaError as e:
            return _short(e)
        return None


def _short(e):
    """The first lines of a numba error's message."""
    return "\n".join(line for line in str(e).strip().splitlines()[:12] if line.strip())


def _gpu_error(rule, device, e, cpu_error):
    """The TypeError of a rule numba-cuda cannot compile: the rule, the
    device, numba-cuda's message, and whether the rule works on the CPU."""
    d = rule.definition
    cpu = ("It compiles for the CPU: run it with device='cpu', or write its body with what numba-cuda supports "
           "(math.* functions, scalars, tuples; no numpy arrays or np.* functions inside a rule)."
           if cpu_error is None else f"It does not compile for the CPU either:\n{cpu_error}")
    return TypeError(f"agent rule {d.name!r} could not be compiled for the GPU ({device}) by numba-cuda:\n"
                     f"{_short(e)}\n{cpu}\n(rule body as compiled:\n{d._source})")


def compile_for_gpu(rule, sim, population, cc=(9, 0)):
    """Compile an attached agent rule for an NVIDIA GPU of compute capability
    ``cc`` without one (numba-cuda's ``compile_ptx``; the simulation may run
    on the CPU: the argument types are taken from its columns).  Returns the
    PTX; a rule numba-cuda cannot compile raises the TypeError its first
    step on a GPU would raise.  Needs ``numba-cuda`` and real compilation
    (not ``NUMBA_ENABLE_CUDASIM``)."""
    import numba

    from .kernels.cuda import ptx as P
    from .kernels.cuda import rules as R

    d = rule.definition
    head, walk, cols, _, _, _ = rule._arguments(sim, population, sim.dt * rule.every, gpu=True)
    kernel = R.compile_rule(d._source, d.fn.__globals__, *rule._gpu_names(), d.name)
    sig = tuple(numba.typeof(a) for a in head + tuple(walk) + tuple(cols))
    try:
        return P.compile_kernel(kernel, sig, cc)
    except Exception as e:
        from numba.core.errors import NumbaError

        if isinstance(e, NumbaError):
            raise _gpu_error(rule, f"sm_{cc[0]}{cc[1]}", e, rule._cpu_check(sim, head, walk, cols)) from None
        raise


_KERNELS = {}  # fingerprint -> compiled kernel (dispatcher), for every Simulation of this process
_SIMPLE = (bool, int, float, complex, str, bytes, type(None))


def _global_fingerprint(value):
    """A stable text for a global the rule reads (numba freezes globals into
    the machine code), or None when it has none (then the rule is not
    cached on disk)."""
    import types

    if isinstance(value, types.ModuleType):
        return f"module {value.__name__}"
    if isinstance(value, _SIMPLE):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, np.generic):
        return f"{value.dtype} {value!r}"
    if isinstance(value, np.ndarray):
        import hashlib

        return f"array {value.dtype} {value.shape} {hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()}"
    if isinstance(value, tuple):
        parts = [_global_fingerprint(v) for v in value]
        return None if None in parts else "tuple (" + ", ".join(parts) + ")"
    return None


def _code_names(code):
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _code_names(const)
    return names


_ENGINE_HASH = None


def _engine_hash():
    """Hash of the engine code a rule kernel inlines (the kernels and this
    module) and of the versions that change machine code."""
    global _ENGINE_HASH
    if _ENGINE_HASH is None:
        import hashlib
        import os
        import platform
        import sys

        import numba

        from . import __version__

        h = hashlib.sha256(f"{__version__} {numba.__version__} {np.__version__} {sys.version} "
                           f"{platform.machine()}".encode())
        here = os.path.dirname(os.path.abspath(__file__))
        kernels = os.path.join(here, "kernels", "cpu")
        for path in [os.path.abspath(__file__)] + sorted(os.path.join(kernels, f) for f in os.listdir(kernels)
                                                         if f.endswith(".py")):
            with open(path, "rb") as f:
                h.update(f.read())
        _ENGINE_HASH = h.hexdigest()
    return _ENGINE_HASH


def _rule_cache(module_src, d):
    """(path of the rule's cached module, fingerprint); path None when the
    rule cannot be cached on disk (a global without a stable value, or no
    usable cache directory: one warning then)."""
    import hashlib

    from ._cache import private_dir, warn_once

    parts = [_engine_hash(), module_src]
    for name in sorted(_code_names(d.fn.__code__)):
        if name in d.fn.__globals__:
            fp = _global_fingerprint(d.fn.__globals__[name])
            if fp is None:
                return None, None  # e.g. a jitted helper: its source is not tracked
            parts.append(f"{name} = {fp}")
    fingerprint = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
    folder, why = private_dir("rules")
    if folder is None:
        warn_once("rules-cache", f"agent rules are compiled in memory, not cached: {why}")
        return None, fingerprint
    return _place_module(folder, fingerprint, module_src), fingerprint


def _place_module(folder, fingerprint, module_src):
    """The module file of a rule in ``folder`` holding exactly ``module_src``:
    written atomically if missing; a file with other content or another
    owner, and numba's cache files beside it, are removed and rebuilt."""
    import glob
    import os
    import tempfile

    from ._cache import warn_once

    path = os.path.join(folder, f"rule_{fingerprint}.py")
    data = module_src.encode()
    try:
        ok = False
        if os.path.exists(path):
            st = os.stat(path)
            mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
            with open(path, "rb") as f:
                ok = mine and f.read() == data
        if not ok:
            for stale in glob.glob(os.path.join(folder, f"rule_{fingerprint}.*")):
                os.remove(stale)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".rule_", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        for other in glob.glob(os.path.join(folder, f"rule_{fingerprint}.*")):
            if hasattr(os, "getuid") and os.stat(other).st_uid != os.getuid():
                os.remove(other)
    except OSError as e:
        warn_once("rules-cache", f"agent rules are compiled in memory, not cached: cannot write {folder!r} "
                                 f"({e.strerror or e})")
        return None
    return path


def _locator_classes():
    from numba.core.caching import _CacheLocator, _SourceFileBackedLocatorMixin

    class RuleCacheLocator(_SourceFileBackedLocatorMixin, _CacheLocator):
        """numba's cache files of a rule beside its module, in biosim's rules
        folder (whatever NUMBA_CACHE_DIR says)."""

        def __init__(self, py_func, py_file):
            import os

            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = os.path.dirname(py_file)

        def get_cache_path(self):
            return self._cache_path

    return [RuleCacheLocator]


def _cached_dispatcher(fn):
    """``njit(parallel=True)`` of ``fn`` with numba's cache in the rules folder."""
    from numba import njit
    from numba.core.caching import CompileResultCacheImpl, FunctionCache

    class RuleCacheImpl(CompileResultCacheImpl):
        _locator_classes = _locator_classes()

    class RuleCache(FunctionCache):
        _impl_class = RuleCacheImpl

    disp = njit(parallel=True)(fn)
    disp._cache = RuleCache(fn)
    return disp


def _from_cache_load(exc):
    """Whether ``exc`` was raised while numba read a cache file (not by the
    rule's own code, which has then not run)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.replace("\\", "/").endswith("numba/core/caching.py"):
            return True
        tb = tb.tb_next
    return False


def _drop_cached(kernel):
    """Remove a disk-cached rule's files and forget it in this process;
    whether all of them could be removed (then it may be cached again)."""
    import glob
    import os

    for k, v in list(_KERNELS.items()):
        if v is kernel:
            del _KERNELS[k]
    path = getattr(kernel, "_biosim_module", None)
    if path is None:
        return False
    try:
        for f in glob.glob(os.path.splitext(path)[0] + ".*"):
            os.remove(f)
    except OSError:
        return False
    return True


def _compile(d, disk=True):
    """The rule's parallel kernel: from this process's table, else from the
    disk cache (its module in biosim's cache folder, numba's machine code
    beside it), else compiled and cached.  Keyed by the generated source,
    the values of the globals the rule reads, the engine code it inlines
    and the versions; column dtypes are part of numba's own key."""
    from numba import njit, prange

    from .kernels.cpu.grid import SEARCH_CHUNK, STENCIL_RUNS, min_image, stencil_runs
    from .kernels.cpu.rng import normal, uniform

    kernel_src = (
        "def _rule_kernel(_type, _code, _n, _uids, _dt, _step, _time, _seed, _stream, _divide, _die, _pos, _W, _C):\n"
        f"    _nchunks = (_n + {SEARCH_CHUNK} - 1) // {SEARCH_CHUNK}\n"
        f"    for _chunk in prange(_nchunks):\n"
        f"        _runs = np.empty({2 * STENCIL_RUNS}, dtype=np.int64)\n"
        f"        for _i in range({SEARCH_CHUNK} * _chunk, min(_n, {SEARCH_CHUNK} * (_chunk + 1))):\n"
        f"            if _type[_i] == _code:\n"
        "                _rule_body(_i, _uids[_i], _dt, _step, _time, _seed, _stream, _divide, _die, _uids, _pos,"
        " _runs, _W, _C)\n"
        "                if _die[_i]:\n"
        "                    _divide[_i] = False\n")
    module_src = (f"# agent rule {d.name!r} from {d.fn.__module__}, generated by biosim.rules\n"
                  f"{d._source}\n\n{kernel_src}")
    path, fingerprint = _rule_cache(module_src, d) if disk else (None, None)
    if fingerprint is not None and fingerprint in _KERNELS:
        return _KERNELS[fingerprint]
    namespace = dict(d.fn.__globals__)
    namespace.update({"_uniform": uniform, "_normal": normal, "np": np, "_min_image": min_image, "prange": prange,
                      "_stencil_runs": stencil_runs, "_value_here": value_at_row, "_gradient_here": gradient_at_row,
                      "_sqrt": math.sqrt})
    exec(compile(module_src, path or f"<agent rule {d.name}>", "exec"), namespace)
    # not inlined by numba: arrays unpacked from a tuple inside an inlined
    # function in a prange loop lose their writes (numba 0.68); compiled on
    # its own, the body also compiles several times faster
    namespace["_rule_body"] = njit(namespace["_rule_body"])
    if path is None:
        kernel = njit(parallel=True)(namespace["_rule_kernel"])
    else:
        kernel = _cached_dispatcher(namespace["_rule_kernel"])
        kernel._biosim_module = path
    if fingerprint is not None:
        _KERNELS[fingerprint] = kernel
    return kernel


def agent_rule(reads=(), writes=(), columns=None):
    """Decorator turning ``fn(agent, ctx)`` into an agent rule (see module doc).

    ``reads`` and ``writes`` name the columns the rule uses; ``columns`` maps
    new column names to ``(dtype, default)`` or ``(dtype, default, inherit)``
    (inheritance at division: "copy", "default" or "split") to create when
    the rule is added."""
    if callable(reads) and not isinstance(reads, (tuple, list, str)):
        return RuleDefinition(reads, (), (), None)
    for name, val in (("reads", reads), ("writes", writes)):
        if isinstance(val, str):
            raise TypeError(f"{name} must be a tuple of column names, got the string {val!r} (write ({val!r},))")

    def wrap(fn):
        return RuleDefinition(fn, reads, writes, columns)
    return wrap
