//! Structural validation of parsed processes over a petgraph graph.
//!
//! Returns every finding, never stops at the first. The checks are linear in the size of the
//! model: one graph per process, one depth-first search forward from the entry points and one
//! backward from the ends.

use std::collections::{BTreeSet, HashMap};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};

use crate::diagnostics::{Code, Diagnostic};
use crate::model::*;
use crate::timer::TimerKind;

/// Checks every process of `defs`. `deployed` holds the process ids call activities may target
/// besides the processes of this file.
pub fn validate(defs: &Definitions, deployed: &BTreeSet<String>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for process in &defs.processes {
        Checker { defs, process, deployed, out: &mut out }.run();
    }
    out
}

struct Checker<'a> {
    defs: &'a Definitions,
    process: &'a Process,
    deployed: &'a BTreeSet<String>,
    out: &'a mut Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, code: Code, node: &Node, message: impl Into<String>) {
        self.out.push(Diagnostic::error(code, node.pos, Some(&node.id), message));
    }

    fn warning(&mut self, code: Code, node: &Node, message: impl Into<String>) {
        self.out.push(Diagnostic::warning(code, node.pos, Some(&node.id), message));
    }

    fn run(&mut self) {
        let p = self.process;
        self.check_starts(None);
        for (i, node) in p.nodes.iter().enumerate() {
            self.check_node(i as NodeIdx, node);
        }
        self.check_reachability();
        self.check_parallel_joins();
        self.check_message_senders();
    }

    /// `messageSenders` may name only messages this process receives: a typo would leave the
    /// real message open to everyone.
    fn check_message_senders(&mut self) {
        let p = self.process;
        let received: BTreeSet<&str> = p
            .nodes
            .iter()
            .filter_map(|node| match &node.kind {
                NodeKind::StartEvent { trigger: Trigger::Message { message }, .. }
                | NodeKind::CatchEvent { trigger: Trigger::Message { message } }
                | NodeKind::Boundary { trigger: Trigger::Message { message }, .. } => Some(message),
                NodeKind::Task(t) => t.message.as_ref(),
                _ => None,
            })
            .filter_map(|id| self.defs.messages.get(id))
            .map(|m| m.name.as_str())
            .collect();
        for name in p.settings.message_senders.keys() {
            if !received.contains(name.as_str()) {
                let known = if received.is_empty() {
                    "it receives no messages".to_string()
                } else {
                    format!("it receives {}", received.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
                };
                self.out.push(Diagnostic::error(
                    Code::BadValue,
                    p.pos,
                    Some(&p.id),
                    format!("messageSenders names the message `{name}`, which no event or task of this process receives; {known}"),
                ));
            }
        }
    }

    /// Start events of a scope: the process, an embedded subprocess or an event subprocess.
    fn check_starts(&mut self, scope: Option<NodeIdx>) {
        let p = self.process;
        let starts: Vec<NodeIdx> = p.children_of(scope).filter(|&i| p.node(i).is_start()).collect();
        match scope {
            None => {
                if starts.is_empty() {
                    self.out.push(Diagnostic::error(
                        Code::NoStartEvent,
                        p.pos,
                        Some(&p.id),
                        format!("process `{}` has no start event", p.id),
                    ));
                }
                let none_starts: Vec<&Node> = starts
                    .iter()
                    .map(|&i| p.node(i))
                    .filter(|n| matches!(n.kind, NodeKind::StartEvent { trigger: Trigger::None, .. }))
                    .collect();
                if let [_, second, ..] = none_starts.as_slice() {
                    self.error(
                        Code::Suspicious,
                        second,
                        "a process may have only one none start event; give the others a timer or message",
                    );
                }
            }
            Some(sub) => {
                let sub_node = p.node(sub);
                let event_sub = matches!(sub_node.kind, NodeKind::SubProcess { triggered_by_event: true });
                if starts.is_empty() {
                    self.error(
                        Code::NoStartEvent,
                        sub_node,
                        format!("subprocess `{}` has no start event", sub_node.id),
                    );
                } else if starts.len() > 1 {
                    self.error(Code::Unsupported, p.node(starts[1]), "a subprocess takes exactly one start event");
                }
                for &s in &starts {
                    let start = p.node(s);
                    let NodeKind::StartEvent { trigger, .. } = &start.kind else { continue };
                    match (event_sub, trigger) {
                        (false, Trigger::None) => {}
                        (false, _) => self.error(
                            Code::Unsupported,
                            start,
                            "an embedded subprocess starts with a none start event; triggers belong to event subprocesses",
                        ),
                        (true, Trigger::None) => self.error(
                            Code::Missing,
                            start,
                            "the start event of an event subprocess needs a timer, message or error trigger",
                        ),
                        (true, _) => {}
                    }
                }
                if event_sub && !(sub_node.incoming.is_empty() && sub_node.outgoing.is_empty()) {
                    self.error(
                        Code::Suspicious,
                        sub_node,
                        "an event subprocess is started by its event and takes no sequence flows",
                    );
                }
            }
        }
    }

    fn check_node(&mut self, idx: NodeIdx, node: &Node) {
        let p = self.process;
        if let NodeKind::SubProcess { .. } = node.kind {
            self.check_starts(Some(idx));
        }
        match &node.kind {
            NodeKind::StartEvent { trigger, .. } => {
                if !node.incoming.is_empty() {
                    self.error(Code::Suspicious, node, "a start event cannot have incoming sequence flows");
                }
                let top_level = node.parent.is_none();
                if let Trigger::Timer(t) = trigger
                    && top_level
                    && t.kind == TimerKind::Duration
                {
                    self.error(
                        Code::BadTimer,
                        node,
                        "a timer start event of a process needs a timeDate or timeCycle, not a duration",
                    );
                }
                if let Trigger::Error { .. } = trigger
                    && top_level
                {
                    self.error(Code::Unsupported, node, "an error start event belongs in an event subprocess");
                }
            }
            NodeKind::EndEvent { .. } if !node.outgoing.is_empty() => {
                self.error(Code::Suspicious, node, "an end event cannot have outgoing sequence flows");
            }
            NodeKind::Boundary { attached_to, cancel_activity, trigger } => {
                if *attached_to == NodeIdx::MAX {
                    return;
                }
                if !node.incoming.is_empty() {
                    self.error(Code::Suspicious, node, "a boundary event cannot have incoming sequence flows");
                }
                if matches!(trigger, Trigger::Error { .. }) && !cancel_activity {
                    self.error(
                        Code::BadValue,
                        node,
                        "an error boundary event always interrupts; remove cancelActivity=\"false\"",
                    );
                }
                if p.node(*attached_to).parent != node.parent {
                    self.error(
                        Code::BoundaryAttachedToNothing,
                        node,
                        "a boundary event must be in the same (sub)process as its activity",
                    );
                }
            }
            NodeKind::Gateway(kind) => self.check_gateway(node, *kind),
            NodeKind::CallActivity { called } => {
                if let Some(Param::Static(target)) = &called.process_id {
                    let known =
                        self.defs.executable_processes().any(|q| &q.id == target) || self.deployed.contains(target);
                    if !known {
                        let in_file = self.defs.processes.iter().any(|q| &q.id == target);
                        let message = if in_file {
                            format!(
                                "called process `{target}` is in this file but not executable (isExecutable=\"false\"); mark it executable or deploy it"
                            )
                        } else {
                            format!(
                                "called process `{target}` is neither in this file nor among the deployed definitions"
                            )
                        };
                        self.out.push(Diagnostic::error(
                            Code::UnknownCalledElement,
                            called.pos,
                            Some(&node.id),
                            message,
                        ));
                    }
                }
            }
            _ => {}
        }
        if !matches!(node.kind, NodeKind::Gateway(_)) {
            for &f in &node.outgoing {
                let flow = p.flow(f);
                if flow.is_conditional() && node.default_flow != Some(f) {
                    self.out.push(Diagnostic::error(
                        Code::Unsupported,
                        flow.pos,
                        Some(&flow.id),
                        format!(
                            "a conditional sequence flow out of `{}` is not supported; put an exclusive gateway after it",
                            node.id
                        ),
                    ));
                }
            }
        }
        self.check_message_catch(node);
    }

    /// A message caught mid-process needs a correlation key to find its instance.
    fn check_message_catch(&mut self, node: &Node) {
        let message = match &node.kind {
            NodeKind::CatchEvent { trigger: Trigger::Message { message } }
            | NodeKind::Boundary { trigger: Trigger::Message { message }, .. } => Some(message),
            NodeKind::StartEvent { trigger: Trigger::Message { message }, .. } if node.parent.is_some() => {
                Some(message)
            }
            NodeKind::Task(t) => t.message.as_ref(),
            _ => None,
        };
        if let Some(m) = message.and_then(|m| self.defs.messages.get(m))
            && m.correlation_key.is_none()
        {
            self.error(
                Code::Missing,
                node,
                format!(
                    "message `{}` is caught inside a running instance, so it needs a correlation key: <zeebe:subscription correlationKey=\"=…\"/> on the message",
                    m.name
                ),
            );
        }
    }

    fn check_gateway(&mut self, node: &Node, kind: GatewayKind) {
        let p = self.process;
        let outgoing: Vec<&Flow> = node.outgoing.iter().map(|&f| p.flow(f)).collect();
        if outgoing.is_empty() {
            self.error(
                Code::CannotReachEnd,
                node,
                format!("{} `{}` has no outgoing sequence flow", kind.xml_name(), node.id),
            );
            return;
        }
        match kind {
            GatewayKind::Exclusive | GatewayKind::Inclusive => {
                if outgoing.len() > 1 {
                    let unconditional: Vec<&&Flow> = outgoing
                        .iter()
                        .filter(|f| {
                            !f.is_conditional() && node.default_flow.map(|d| p.flow(d).id != f.id).unwrap_or(true)
                        })
                        .collect();
                    if unconditional.len() == outgoing.len() && node.default_flow.is_none() {
                        self.error(
                            Code::GatewayWithoutConditions,
                            node,
                            format!(
                                "{} `{}` splits into {} flows but none has a condition and there is no default flow",
                                kind.xml_name(),
                                node.id,
                                outgoing.len()
                            ),
                        );
                    } else {
                        for f in unconditional {
                            self.out.push(Diagnostic::error(
                                Code::GatewayWithoutConditions,
                                f.pos,
                                Some(&f.id),
                                format!(
                                    "flow out of {} `{}` has no condition and is not its default flow",
                                    kind.xml_name(),
                                    node.id
                                ),
                            ));
                        }
                    }
                }
                if let Some(d) = node.default_flow
                    && p.flow(d).condition.is_some()
                {
                    let f = p.flow(d);
                    self.out.push(Diagnostic::warning(
                        Code::Suspicious,
                        f.pos,
                        Some(&f.id),
                        "the default flow's condition is never evaluated; remove it",
                    ));
                }
            }
            GatewayKind::Parallel => {
                for f in outgoing.iter().filter(|f| f.is_conditional()) {
                    self.out.push(Diagnostic::error(
                        Code::ConditionOnParallelFlow,
                        f.pos,
                        Some(&f.id),
                        format!("flow out of parallel gateway `{}` has a condition, which would be ignored; use an inclusive gateway", node.id),
                    ));
                }
            }
            GatewayKind::EventBased => {
                if outgoing.len() < 2 {
                    self.error(
                        Code::Suspicious,
                        node,
                        "an event-based gateway needs at least two outgoing flows to race",
                    );
                }
                for f in &outgoing {
                    if f.is_conditional() {
                        self.out.push(Diagnostic::error(
                            Code::Unsupported,
                            f.pos,
                            Some(&f.id),
                            "flows out of an event-based gateway take no conditions",
                        ));
                    }
                    let target = p.node(f.target);
                    let ok = matches!(target.kind, NodeKind::CatchEvent { .. })
                        || matches!(&target.kind, NodeKind::Task(t) if t.kind == TaskKind::Receive);
                    // A catch event (or receive task) whose event definition lacks its detail
                    // (no messageRef, no time) has its own error; it is the right kind of target.
                    let incomplete_catch = matches!(&target.kind, NodeKind::Unsupported { element, .. }
                        if element == "intermediateCatchEvent" || element == "receiveTask");
                    if !ok && !incomplete_catch {
                        self.error(
                            Code::Unsupported,
                            target,
                            format!(
                                "event-based gateway `{}` must lead to timer or message catch events (or receive tasks), not to `{}`",
                                node.id, target.id
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Unreachable nodes and nodes that cannot reach an end of their scope.
    fn check_reachability(&mut self) {
        let p = self.process;
        let n = p.nodes.len();
        let mut forward: DiGraph<(), ()> = DiGraph::with_capacity(n, p.flows.len() + n);
        let mut same_scope: DiGraph<(), ()> = DiGraph::with_capacity(n, p.flows.len() + n);
        for _ in 0..n {
            forward.add_node(());
            same_scope.add_node(());
        }
        let ix = |i: NodeIdx| NodeIndex::new(i as usize);
        for f in &p.flows {
            forward.add_edge(ix(f.source), ix(f.target), ());
            same_scope.add_edge(ix(f.source), ix(f.target), ());
        }
        let mut roots = Vec::new();
        for (i, node) in p.nodes.iter().enumerate() {
            let i = i as NodeIdx;
            match &node.kind {
                NodeKind::Boundary { attached_to, .. } if *attached_to != NodeIdx::MAX => {
                    forward.add_edge(ix(*attached_to), ix(i), ());
                    same_scope.add_edge(ix(*attached_to), ix(i), ());
                }
                NodeKind::Unsupported { attached_to: Some(a), .. } => {
                    forward.add_edge(ix(*a), ix(i), ());
                    same_scope.add_edge(ix(*a), ix(i), ());
                }
                _ if node.is_start() => match node.parent {
                    None => roots.push(i),
                    Some(sub) => {
                        forward.add_edge(ix(sub), ix(i), ());
                    }
                },
                NodeKind::SubProcess { triggered_by_event: true } => match node.parent {
                    None => roots.push(i),
                    Some(sub) => {
                        forward.add_edge(ix(sub), ix(i), ());
                    }
                },
                _ => {}
            }
        }
        let mut reachable = vec![false; n];
        for &r in &roots {
            let mut dfs = Dfs::new(&forward, ix(r));
            while let Some(v) = dfs.next(&forward) {
                reachable[v.index()] = true;
            }
        }
        // Ends: nodes with nothing after them in their own scope.
        let mut reaches_end = vec![false; n];
        let reversed = Reversed(&same_scope);
        for (i, node) in p.nodes.iter().enumerate() {
            let is_sink = same_scope.neighbors_directed(NodeIndex::new(i), Direction::Outgoing).next().is_none();
            let is_event_sub = matches!(node.kind, NodeKind::SubProcess { triggered_by_event: true });
            if (is_sink || is_event_sub) && !reaches_end[i] {
                let mut dfs = Dfs::new(reversed, NodeIndex::new(i));
                while let Some(v) = dfs.next(reversed) {
                    reaches_end[v.index()] = true;
                }
            }
        }
        let unresolved_boundary = |node: &Node| {
            matches!(node.kind, NodeKind::Boundary { attached_to: NodeIdx::MAX, .. })
                || matches!(&node.kind, NodeKind::Unsupported { element, attached_to: None } if element == "boundaryEvent")
        };
        for (i, node) in p.nodes.iter().enumerate() {
            if unresolved_boundary(node) {
                continue;
            }
            if !reachable[i] {
                self.error(
                    Code::Unreachable,
                    node,
                    format!("`{}` can never be reached from a start event", node.label()),
                );
            } else if !reaches_end[i] {
                self.error(
                    Code::CannotReachEnd,
                    node,
                    format!("from `{}` no path leads to an end: the instance would run forever", node.label()),
                );
            } else if node.outgoing.is_empty()
                && !matches!(
                    node.kind,
                    NodeKind::EndEvent { .. }
                        | NodeKind::Boundary { .. }
                        | NodeKind::Gateway(_)
                        | NodeKind::Unsupported { .. }
                )
                && !matches!(node.kind, NodeKind::SubProcess { triggered_by_event: true })
                && !node.boundaries.iter().any(|&b| !p.node(b).outgoing.is_empty())
            {
                self.warning(
                    Code::Suspicious,
                    node,
                    format!(
                        "`{}` has no outgoing flow, so its path ends there; add an end event to make that explicit",
                        node.label()
                    ),
                );
            }
        }
    }

    /// A parallel join waiting on branches of one exclusive split never completes.
    fn check_parallel_joins(&mut self) {
        let p = self.process;
        for node in &p.nodes {
            if !matches!(node.kind, NodeKind::Gateway(GatewayKind::Parallel)) || node.incoming.len() < 2 {
                continue;
            }
            let mut origins: HashMap<NodeIdx, usize> = HashMap::new();
            for &f in &node.incoming {
                if let Some(split) = self.nearest_split(p.flow(f).source) {
                    *origins.entry(split).or_default() += 1;
                }
            }
            let mut culprits: Vec<NodeIdx> = origins.into_iter().filter(|(_, c)| *c >= 2).map(|(s, _)| s).collect();
            culprits.sort_unstable();
            for split in culprits {
                let s = p.node(split);
                if let NodeKind::Gateway(kind @ (GatewayKind::Exclusive | GatewayKind::EventBased)) = s.kind {
                    self.warning(
                        Code::Suspicious,
                        node,
                        format!(
                            "parallel join `{}` waits for several branches of {} `{}`, of which only one runs; the join would wait forever — use an exclusive join",
                            node.id,
                            kind.xml_name(),
                            s.id
                        ),
                    );
                }
            }
        }
    }

    /// Walks back along a single-entry, single-exit chain to the gateway that split it.
    fn nearest_split(&self, mut at: NodeIdx) -> Option<NodeIdx> {
        let p = self.process;
        for _ in 0..p.nodes.len() {
            let node = p.node(at);
            if node.outgoing.len() > 1 {
                return Some(at);
            }
            match node.incoming.as_slice() {
                [only] => at = p.flow(*only).source,
                _ => return None,
            }
        }
        None
    }
}
