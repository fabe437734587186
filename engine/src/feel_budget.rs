//! The evaluation budget of FEEL: how far a run of expressions may go before it is stopped with
//! an incident instead of holding its command (and the write transaction) for minutes or
//! overflowing the stack.
//!
//! dsntk evaluates a syntax tree by recursion and offers no way to stop it, so the budget is
//! put into the tree: after parsing, [`instrument`] rewrites the places where work can grow
//! with the data into calls of reserved functions, bound to Rust closures that count:
//!
//! - the body of every FEEL function (recursion): entering adds the body's nesting to the
//!   evaluation's depth and refuses it past [`Limits::depth`], and costs a step per call in
//!   progress (each name lookup walks the scopes of every call in progress); leaving checks
//!   the size of the result;
//! - `for x in E return B` with one iteration context whose body does not read `partial` runs
//!   in Rust ([`Loop`]): a step per item, the results' size counted as they come, linear in
//!   the number of items. dsntk's own loop copies the list of results made so far (`partial`)
//!   into every iteration, which made `for i in 1..(n) return i` quadratic in `n`. Other `for`
//!   expressions stay dsntk's, each iteration paying for that copy;
//! - the conditions of filters and of `some`/`every`: a step per item;
//! - context entries and the final result: their size;
//! - list functions that compare every pair of items (`distinct values`, `union`,
//!   `duplicate values`): steps for the pairs, before they run.
//!
//! When a limit is passed, the closure unwinds out of dsntk with [`Overrun`] as payload
//! (`resume_unwind`, so no panic hook runs) and [`crate::feel::Expr`] turns it into an
//! evaluation error, which the executor raises as an incident on the element. The counting is
//! deterministic: the same command on the same state stops at the same place. The host may add
//! a wall-clock limit through [`Budget::with_interrupt`]; the engine itself reads no clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dsntk_feel::closure::Closure;
use dsntk_feel::context::FeelContext;
use dsntk_feel::values::Value as FeelValue;
use dsntk_feel::{Evaluator, FeelNumber, FeelScope, FeelType, FunctionBody, Name};
use dsntk_feel_parser::AstNode;

/// The limits of one command's evaluations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Steps of work for the whole command: FEEL iterations, function calls, the elements it
    /// activates, and a step per [`BYTES_PER_STEP`] bytes of values measured.
    pub steps: u64,
    /// The deepest an evaluation may nest: the expression's own nesting plus the nesting of
    /// the body of each function call in progress (plus [`CALL_DEPTH`] per call). The hosts
    /// run engine work on 64 MiB stacks; 6,000 levels need about 40 MiB in a debug build.
    pub depth: u64,
    /// The largest value (string, list, context) an evaluation may build, in bytes as
    /// [`value_size`] counts them.
    pub value_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { steps: DEFAULT_STEPS, depth: DEFAULT_DEPTH, value_bytes: DEFAULT_VALUE_BYTES }
    }
}

/// The default steps per command: a loop over two million numbers, about a second of work in
/// a release build (the server adds a wall-clock limit of its own).
pub const DEFAULT_STEPS: u64 = 2_000_000;
/// The default depth: [`crate::feel::MAX_NESTING`] for the expression and as much again for
/// the function calls in progress, and some.
pub const DEFAULT_DEPTH: u64 = 6_000;
/// The default largest value: 64 MiB as [`value_size`] counts (a FEEL value takes about 100
/// bytes in memory, so a list of half a million numbers), far above what the 2 MiB JSON body
/// the server accepts turns into.
pub const DEFAULT_VALUE_BYTES: u64 = 64 << 20;
/// The depth a function call adds besides its body's nesting (the frames of the call itself).
pub const CALL_DEPTH: u64 = 4;
/// Measuring or copying this many bytes of values costs one step.
pub const BYTES_PER_STEP: u64 = 256;
/// The deepest nesting of a value that can be stored: the stored state wraps variables in a
/// few levels, and JSON is read back with a nesting limit of 128.
pub const MAX_STORED_NESTING: usize = 100;

/// Why an evaluation was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overrun {
    /// The command's steps are spent.
    Steps { limit: u64 },
    /// Function calls nested too deep.
    Depth { limit: u64 },
    /// A value grew too large.
    Size { bytes: u64, limit: u64 },
    /// The host stopped the command (its time limit), with the host's reason.
    Interrupted(String),
}

impl std::fmt::Display for Overrun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Overrun::Steps { limit } => write!(
                f,
                "the command's evaluation budget of {limit} steps is spent (a loop or a recursion too long for one command); work on shorter lists, or split the work over several tasks"
            ),
            Overrun::Depth { limit } => write!(
                f,
                "function calls nest deeper than the evaluation allows ({limit} levels, counting each called function's body); the recursion is too deep: use a `for` loop or a shorter input"
            ),
            Overrun::Size { limit, .. } => write!(
                f,
                "a value grew past {}, the largest an evaluation may build; build smaller strings or lists",
                mib(*limit)
            ),
            Overrun::Interrupted(reason) => f.write_str(reason),
        }
    }
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 { format!("{} MiB", bytes >> 20) } else { format!("{} KiB", bytes.div_ceil(1024)) }
}

/// The host's check, asked every few thousand steps: `Some(reason)` stops the command.
pub type Interrupt = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// One command's budget, shared by all its evaluations (clones share the count).
#[derive(Clone)]
pub struct Budget {
    meter: Arc<Meter>,
}

struct Meter {
    limits: Limits,
    spent: AtomicU64,
    /// Depth of the evaluation running now (reset by each evaluation).
    depth: AtomicU64,
    /// Function calls in progress in the evaluation running now.
    calls: AtomicU64,
    interrupt: Option<Interrupt>,
    /// Set once the budget is overrun: every later charge fails at once.
    overrun: std::sync::Mutex<Option<Overrun>>,
    stopped: AtomicBool,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget").field("limits", &self.meter.limits).field("spent", &self.spent()).finish()
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(Limits::default())
    }
}

/// How often (in steps) the host's interrupt is asked.
const INTERRUPT_EVERY: u64 = 4096;

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget {
            meter: Arc::new(Meter {
                limits,
                spent: AtomicU64::new(0),
                depth: AtomicU64::new(0),
                calls: AtomicU64::new(0),
                interrupt: None,
                overrun: std::sync::Mutex::new(None),
                stopped: AtomicBool::new(false),
            }),
        }
    }

    /// A budget that also asks `interrupt` every few thousand steps (the host's time limit).
    pub fn with_interrupt(limits: Limits, interrupt: Interrupt) -> Budget {
        let mut budget = Budget::new(limits);
        Arc::get_mut(&mut budget.meter).expect("a new budget is not shared").interrupt = Some(interrupt);
        budget
    }

    pub fn limits(&self) -> Limits {
        self.meter.limits
    }

    /// The steps spent so far.
    pub fn spent(&self) -> u64 {
        self.meter.spent.load(Ordering::Relaxed)
    }

    /// Why the budget was overrun, if it was.
    pub fn overrun(&self) -> Option<Overrun> {
        self.meter.overrun.lock().expect("budget").clone()
    }

    fn fail(&self, overrun: Overrun) -> Overrun {
        let mut slot = self.meter.overrun.lock().expect("budget");
        self.meter.stopped.store(true, Ordering::Relaxed);
        slot.get_or_insert(overrun).clone()
    }

    /// Spends `steps`; an error once the budget is spent (or the host interrupted).
    pub fn charge(&self, steps: u64) -> Result<(), Overrun> {
        if self.meter.stopped.load(Ordering::Relaxed) {
            return Err(self.overrun().expect("a stopped budget says why"));
        }
        let before = self.meter.spent.fetch_add(steps, Ordering::Relaxed);
        let after = before.saturating_add(steps);
        if after > self.meter.limits.steps {
            return Err(self.fail(Overrun::Steps { limit: self.meter.limits.steps }));
        }
        if let Some(interrupt) = &self.meter.interrupt
            && before / INTERRUPT_EVERY != after / INTERRUPT_EVERY
            && let Some(reason) = interrupt()
        {
            return Err(self.fail(Overrun::Interrupted(reason)));
        }
        Ok(())
    }

    /// Checks a value's size against the limit, charging for the measuring.
    pub fn check_size(&self, value: &FeelValue) -> Result<(), Overrun> {
        let limit = self.meter.limits.value_bytes;
        let bytes = value_size(value, limit.saturating_add(1));
        self.charge(1 + bytes / BYTES_PER_STEP)?;
        if bytes > limit {
            return Err(self.fail(Overrun::Size { bytes, limit }));
        }
        Ok(())
    }

    /// Starts one evaluation: its depth begins at its own nesting.
    pub(crate) fn begin(&self, nesting: u64) -> Result<(), Overrun> {
        self.meter.depth.store(nesting, Ordering::Relaxed);
        self.meter.calls.store(0, Ordering::Relaxed);
        self.charge(1)
    }

    fn enter(&self, units: u64) -> Result<(), Overrun> {
        let depth = self.meter.depth.fetch_add(units, Ordering::Relaxed) + units;
        let calls = self.meter.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if depth > self.meter.limits.depth {
            return Err(self.fail(Overrun::Depth { limit: self.meter.limits.depth }));
        }
        self.charge(calls)
    }

    fn leave(&self, units: u64) {
        self.meter.depth.fetch_sub(units.min(self.meter.depth.load(Ordering::Relaxed)), Ordering::Relaxed);
        self.meter.calls.fetch_sub(1.min(self.meter.calls.load(Ordering::Relaxed)), Ordering::Relaxed);
    }
}

/// Unwinds out of dsntk's evaluation; caught by [`catch`].
fn stop(overrun: Overrun) -> ! {
    std::panic::resume_unwind(Box::new(overrun))
}

/// Runs `evaluate`, turning the unwinding of an overrun into an error. Any other panic goes on.
pub(crate) fn catch<T>(evaluate: impl FnOnce() -> T) -> Result<T, Overrun> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(evaluate)) {
        Ok(value) => Ok(value),
        Err(payload) => match payload.downcast::<Overrun>() {
            Ok(overrun) => Err(*overrun),
            Err(other) => std::panic::resume_unwind(other),
        },
    }
}

/// The size of a value in bytes as the budget counts them: the size of a FEEL value in memory
/// for each value, plus the bytes of strings and context keys; counting stops once past
/// `stop_after`.
pub fn value_size(value: &FeelValue, stop_after: u64) -> u64 {
    let each = std::mem::size_of::<FeelValue>() as u64;
    let mut total = 0u64;
    let mut pending: Vec<&FeelValue> = vec![value];
    while let Some(v) = pending.pop() {
        total += each;
        match v {
            FeelValue::String(s) => total += s.len() as u64,
            FeelValue::List(items) => pending.extend(items.iter()),
            FeelValue::Context(ctx) => {
                for (key, item) in ctx.iter() {
                    total += key.to_string().len() as u64;
                    pending.push(item);
                }
            }
            _ => {}
        }
        if total > stop_after {
            break;
        }
    }
    total
}

/// How deep a value nests (a scalar is 0, a list of scalars 1); counting stops past `stop_after`.
pub fn value_nesting(value: &FeelValue, stop_after: usize) -> usize {
    let mut deepest = 0;
    let mut pending: Vec<(&FeelValue, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        if deepest > stop_after {
            break;
        }
        match v {
            FeelValue::List(items) => pending.extend(items.iter().map(|i| (i, depth + 1))),
            FeelValue::Context(ctx) => pending.extend(ctx.iter().map(|(_, i)| (i, depth + 1))),
            _ => {}
        }
    }
    deepest
}

// ---- the rewrite --------------------------------------------------------------------------

const ENTER: &str = "reglament_enter";
const LEAVE: &str = "reglament_leave";
const TICK: &str = "reglament_tick";
const TICK_PARTIAL: &str = "reglament_tick_partial";
const CHECK: &str = "reglament_check";
const PAIRS: &str = "reglament_pairs";
const LOOP: &str = "reglament_loop";

/// Functions whose work grows with the square of their list's length.
const PAIRWISE: &[&str] = &["distinct values", "union", "duplicate values", "reglament_duplicate_values"];

/// A `for` loop run in Rust: its variable and its body, prepared once.
struct Loop {
    variable: Name,
    body: Evaluator,
}

/// What an instrumented expression binds when it runs.
#[derive(Default)]
pub struct Hooks {
    loops: Vec<Arc<Loop>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hooks({} loops)", self.loops.len())
    }
}

/// Rewrites the syntax tree so evaluating it counts against a [`Budget`] (see the module
/// documentation). Run after every other rewrite: loop bodies are prepared from the final tree.
pub fn instrument(node: &mut AstNode) -> Hooks {
    let mut hooks = Hooks::default();
    walk(node, &mut hooks);
    hooks
}

fn call(name: &str, args: Vec<AstNode>) -> AstNode {
    AstNode::FunctionInvocation(
        Box::new(AstNode::Name(Name::from(name))),
        Box::new(AstNode::PositionalParameters(args)),
    )
}

fn take(node: &mut AstNode) -> AstNode {
    std::mem::replace(node, AstNode::Null)
}

fn wrap(node: &mut AstNode, name: &str) {
    let inner = take(node);
    *node = call(name, vec![inner]);
}

fn walk(node: &mut AstNode, hooks: &mut Hooks) {
    // Children first, so a rewritten node's parts are already instrumented.
    for child in children(node) {
        walk(child, hooks);
    }
    match node {
        AstNode::FunctionDefinition(params, definition) => {
            // The body is entered with its arguments: their size is checked before the body
            // runs, so arguments that double at each call stop at the limit.
            let arguments: Vec<AstNode> = match params.as_ref() {
                AstNode::FormalParameters(items) => items
                    .iter()
                    .filter_map(|p| match p {
                        AstNode::FormalParameter(name, _) => match name.as_ref() {
                            AstNode::ParameterName(name) => Some(AstNode::Name(name.clone())),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if let AstNode::FunctionBody(body, false) = definition.as_mut() {
                let units = nesting(body) as u64 + CALL_DEPTH;
                let inner = take(body);
                let units = AstNode::Numeric(units.to_string(), String::new(), '+', String::new());
                let enter = call(ENTER, vec![units.clone(), AstNode::List(arguments)]);
                **body = call(LEAVE, vec![enter, units, inner]);
            }
        }
        AstNode::For(contexts, body) => {
            let single = match contexts.as_ref() {
                AstNode::IterationContexts(items) if items.len() == 1 => match &items[0] {
                    AstNode::IterationContextSingle(variable, _)
                    | AstNode::IterationContextInterval(variable, _, _) => match variable.as_ref() {
                        AstNode::Name(name) => Some(name.clone()),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            };
            match single {
                Some(variable) if !mentions(body, "partial") => {
                    let AstNode::IterationContexts(items) = contexts.as_mut() else { unreachable!("matched above") };
                    let domain = match &mut items[0] {
                        AstNode::IterationContextSingle(_, domain) => take(domain),
                        // `i in 1..(n)`: a closed range.
                        AstNode::IterationContextInterval(_, start, end) => AstNode::Range(
                            Box::new(AstNode::IntervalStart(Box::new(take(start)), dsntk_feel::IntervalType::Closed)),
                            Box::new(AstNode::IntervalEnd(Box::new(take(end)), dsntk_feel::IntervalType::Closed)),
                        ),
                        _ => unreachable!("matched above"),
                    };
                    let body = dsntk_feel_evaluator::prepare(body);
                    let index = hooks.loops.len();
                    hooks.loops.push(Arc::new(Loop { variable, body }));
                    *node = call(&loop_name(index), vec![domain]);
                }
                _ => {
                    // dsntk copies `partial` into every iteration: charge for it.
                    let inner = take(body);
                    **body = call(TICK_PARTIAL, vec![AstNode::Name(Name::from("partial")), inner]);
                }
            }
        }
        AstNode::Filter(_, condition) | AstNode::Satisfies(condition) => wrap(condition, TICK),
        AstNode::ContextEntry(_, value) => wrap(value, CHECK),
        AstNode::FunctionInvocation(function, params) => {
            if let AstNode::Name(name) = function.as_ref()
                && PAIRWISE.contains(&name.to_string().as_str())
                && let AstNode::PositionalParameters(args) = params.as_mut()
            {
                for arg in args {
                    wrap(arg, PAIRS);
                }
            }
        }
        _ => {}
    }
}

fn loop_name(index: usize) -> String {
    format!("{LOOP}_{index}")
}

/// Does the tree read the name `name`?
fn mentions(node: &mut AstNode, name: &str) -> bool {
    if let AstNode::Name(n) = node
        && n.to_string() == name
    {
        return true;
    }
    children(node).into_iter().any(|c| mentions(c, name))
}

/// The nesting depth of a tree (a leaf is 1).
pub(crate) fn nesting(node: &mut AstNode) -> usize {
    1 + children(node).into_iter().map(nesting).max().unwrap_or(0)
}

/// The direct children of a syntax node.
pub(crate) fn children(node: &mut AstNode) -> Vec<&mut AstNode> {
    match node {
        AstNode::Add(a, b)
        | AstNode::And(a, b)
        | AstNode::ContextEntry(a, b)
        | AstNode::ContextTypeEntry(a, b)
        | AstNode::Div(a, b)
        | AstNode::Eq(a, b)
        | AstNode::Every(a, b)
        | AstNode::Exp(a, b)
        | AstNode::Filter(a, b)
        | AstNode::For(a, b)
        | AstNode::FormalParameter(a, b)
        | AstNode::FunctionDefinition(a, b)
        | AstNode::FunctionInvocation(a, b)
        | AstNode::FunctionType(a, b)
        | AstNode::In(a, b)
        | AstNode::InstanceOf(a, b)
        | AstNode::IterationContextSingle(a, b)
        | AstNode::Lt(a, b)
        | AstNode::Le(a, b)
        | AstNode::Gt(a, b)
        | AstNode::Ge(a, b)
        | AstNode::Mul(a, b)
        | AstNode::NamedParameter(a, b)
        | AstNode::Nq(a, b)
        | AstNode::Or(a, b)
        | AstNode::Out(a, b)
        | AstNode::Path(a, b)
        | AstNode::QuantifiedContext(a, b)
        | AstNode::Range(a, b)
        | AstNode::Some(a, b)
        | AstNode::Sub(a, b) => vec![a.as_mut(), b.as_mut()],
        AstNode::If(a, b, c) | AstNode::IterationContextInterval(a, b, c) | AstNode::Between(a, b, c) => {
            vec![a.as_mut(), b.as_mut(), c.as_mut()]
        }
        AstNode::EvaluatedExpression(a)
        | AstNode::FunctionBody(a, _)
        | AstNode::IntervalEnd(a, _)
        | AstNode::IntervalStart(a, _)
        | AstNode::ListType(a)
        | AstNode::Neg(a)
        | AstNode::RangeType(a)
        | AstNode::Satisfies(a)
        | AstNode::UnaryGe(a)
        | AstNode::UnaryGt(a)
        | AstNode::UnaryLe(a)
        | AstNode::UnaryLt(a)
        | AstNode::UnaryEq(a)
        | AstNode::UnaryNe(a) => vec![a.as_mut()],
        AstNode::CommaList(items)
        | AstNode::Context(items)
        | AstNode::ContextType(items)
        | AstNode::ExpressionList(items)
        | AstNode::FormalParameters(items)
        | AstNode::IterationContexts(items)
        | AstNode::List(items)
        | AstNode::NamedParameters(items)
        | AstNode::NegatedList(items)
        | AstNode::ParameterTypes(items)
        | AstNode::PositionalParameters(items)
        | AstNode::QualifiedName(items)
        | AstNode::QuantifiedContexts(items) => items.iter_mut().collect(),
        AstNode::At(_)
        | AstNode::Boolean(_)
        | AstNode::ContextEntryKey(_)
        | AstNode::ContextTypeEntryKey(_)
        | AstNode::FeelType(_)
        | AstNode::Irrelevant
        | AstNode::Name(_)
        | AstNode::Null
        | AstNode::Numeric(..)
        | AstNode::ParameterName(_)
        | AstNode::QualifiedNameSegment(_)
        | AstNode::String(_) => Vec::new(),
    }
}

// ---- the bindings -------------------------------------------------------------------------

impl Hooks {
    /// Binds the budget's functions for one evaluation.
    pub fn bind(&self, ctx: &mut FeelContext, budget: &Budget) {
        let b = budget.clone();
        bind(ctx, ENTER, 2, move |args| {
            b.enter(number_arg(&args[0])).unwrap_or_else(|o| stop(o));
            b.check_size(&args[1]).unwrap_or_else(|o| stop(o));
            FeelValue::Null(None)
        });
        let b = budget.clone();
        bind(ctx, LEAVE, 3, move |args| {
            b.leave(number_arg(&args[1]));
            let value = args.into_iter().nth(2).unwrap_or(FeelValue::Null(None));
            b.check_size(&value).unwrap_or_else(|o| stop(o));
            value
        });
        let b = budget.clone();
        bind(ctx, TICK, 1, move |args| {
            b.charge(1).unwrap_or_else(|o| stop(o));
            args.into_iter().next().unwrap_or(FeelValue::Null(None))
        });
        let b = budget.clone();
        bind(ctx, TICK_PARTIAL, 2, move |args| {
            let mut args = args.into_iter();
            let (partial, value) = (args.next(), args.next());
            let (partial, value) = (partial.unwrap_or(FeelValue::Null(None)), value.unwrap_or(FeelValue::Null(None)));
            b.check_size(&partial).unwrap_or_else(|o| stop(o));
            value
        });
        let b = budget.clone();
        bind(ctx, CHECK, 1, move |args| {
            let value = args.into_iter().next().unwrap_or(FeelValue::Null(None));
            b.check_size(&value).unwrap_or_else(|o| stop(o));
            value
        });
        let b = budget.clone();
        bind(ctx, PAIRS, 1, move |args| {
            let value = args.into_iter().next().unwrap_or(FeelValue::Null(None));
            if let FeelValue::List(items) = &value {
                let n = items.len() as u64;
                b.charge(n.saturating_mul(n) / 16).unwrap_or_else(|o| stop(o));
            }
            value
        });
        for (index, lp) in self.loops.iter().enumerate() {
            let b = budget.clone();
            let lp = lp.clone();
            let function = rust_function(1, move |scope, args| {
                run_loop(&lp, &b, scope, args.into_iter().next().unwrap_or(FeelValue::Null(None)))
            });
            ctx.set_entry(&Name::from(loop_name(index).as_str()), function);
        }
    }
}

fn number_arg(v: &FeelValue) -> u64 {
    match v {
        FeelValue::Number(n) => n.to_string().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Binds `name` to a Rust function of `arity` positional arguments.
fn bind(
    ctx: &mut FeelContext,
    name: &str,
    arity: usize,
    f: impl Fn(Vec<FeelValue>) -> FeelValue + Send + Sync + 'static,
) {
    ctx.set_entry(&Name::from(name), rust_function(arity, move |_, args| f(args)));
}

/// A FEEL function of `arity` positional arguments computed by `f`, which also sees the
/// caller's scope.
pub(crate) fn rust_function(
    arity: usize,
    f: impl Fn(&FeelScope, Vec<FeelValue>) -> FeelValue + Send + Sync + 'static,
) -> FeelValue {
    let params: Vec<(Name, FeelType)> =
        (0..arity).map(|i| (Name::from(format!("reglament_arg{i}").as_str()), FeelType::Any)).collect();
    let names: Vec<Name> = params.iter().map(|(n, _)| n.clone()).collect();
    let body: Evaluator = Box::new(move |scope: &FeelScope| {
        f(scope, names.iter().map(|n| scope.get_value(n).unwrap_or(FeelValue::Null(None))).collect())
    });
    FeelValue::FunctionDefinition(
        params,
        FunctionBody::External(Arc::new(body)),
        false,
        Closure::default(),
        FeelContext::default(),
        FeelType::Any,
    )
}

/// `for x in domain return body`, as dsntk gives it for one iteration context: a list's items
/// (a single value counts as a list of one), or a closed range of numbers or dates stepped by
/// one (downwards when it starts above its end).
fn run_loop(lp: &Loop, budget: &Budget, scope: &FeelScope, domain: FeelValue) -> FeelValue {
    let limit = budget.limits().value_bytes;
    let mut results = Vec::new();
    let mut size = std::mem::size_of::<FeelValue>() as u64;
    let mut each = |item: FeelValue| {
        budget.charge(1).unwrap_or_else(|o| stop(o));
        let mut ctx = FeelContext::default();
        ctx.set_entry(&lp.variable, item);
        scope.push(ctx);
        let value = (lp.body)(scope);
        scope.pop();
        let bytes = value_size(&value, limit.saturating_add(1));
        size = size.saturating_add(bytes);
        budget.charge(bytes / BYTES_PER_STEP).unwrap_or_else(|o| stop(o));
        if size > limit {
            stop(budget.fail(Overrun::Size { bytes: size, limit }));
        }
        results.push(value);
    };
    match domain {
        FeelValue::Range(start, dsntk_feel::IntervalType::Closed, end, dsntk_feel::IntervalType::Closed) => {
            match (*start, *end) {
                (FeelValue::Number(start), FeelValue::Number(end)) => {
                    let one = FeelNumber::one();
                    let mut current = start;
                    if start <= end {
                        while current <= end {
                            each(FeelValue::Number(current));
                            current += one;
                        }
                    } else {
                        while current >= end {
                            each(FeelValue::Number(current));
                            current -= one;
                        }
                    }
                }
                (FeelValue::Date(start), FeelValue::Date(end)) => {
                    let mut current = Some(start.clone());
                    while let Some(date) = current.filter(|d| if start <= end { *d <= end } else { *d >= end }) {
                        current = if start <= end { date.add_days(1) } else { date.sub_days(1) };
                        each(FeelValue::Date(date));
                    }
                }
                (start, _) => {
                    return FeelValue::Null(Some(format!(
                        "a `for` range runs over numbers or dates, not {}",
                        start.type_of()
                    )));
                }
            }
        }
        FeelValue::Range(..) => {
            return FeelValue::Null(Some("a `for` range must be closed at both ends (`a..b`)".into()));
        }
        FeelValue::List(items) => items.into_iter().for_each(&mut each),
        single => each(single),
    }
    FeelValue::List(results)
}
