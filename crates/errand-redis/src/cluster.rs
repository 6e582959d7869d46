//! What running on a Redis Cluster takes beyond redis-rs's cluster client: pipelines split per
//! slot (the client sends a pipeline to one node, and a node refuses keys of slots it does not
//! own), and the list of primaries, for what must visit each of them (`SCAN`, `INFO`).

use redis::cluster_routing::{Route, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Arg, Cmd, Value};

/// Commands that name no key: they run wherever the commands around them run.
const KEYLESS: [&[u8]; 7] = [
    b"TIME", b"PING", b"SCRIPT", b"WAIT", b"INFO", b"CONFIG", b"CLUSTER",
];

/// The slot of the key a command works on; `None` for a command without a key (see
/// [`KEYLESS`]) or a script called without one.
pub(crate) fn slot_of(cmd: &Cmd) -> Option<Slot> {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?;
    if KEYLESS.iter().any(|k| name.eq_ignore_ascii_case(k)) {
        return None;
    }
    let key = if name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL") {
        let _script = args.next()?;
        if args.next()? == b"0" {
            return None;
        }
        args.next()?
    } else {
        args.next()?
    };
    Some(Slot::for_key(key))
}

/// The commands of a pipeline that go to one slot, and where each came from.
#[derive(Debug)]
pub(crate) struct Group {
    /// The slot, or `None` when no command of the pipeline names a key.
    pub(crate) slot: Option<Slot>,
    /// Indexes of the commands in the original order.
    pub(crate) positions: Vec<usize>,
}

impl Group {
    /// Where the group's pipeline goes: the primary of its slot.
    pub(crate) fn route(&self) -> SingleNodeRoutingInfo {
        match self.slot {
            Some(slot) => {
                SingleNodeRoutingInfo::SpecificNode(Route::with_slot(slot, SlotAddr::Master))
            }
            None => SingleNodeRoutingInfo::RandomPrimary,
        }
    }
}

/// Splits `cmds` into one group per slot, keeping each group's commands in their order. A
/// command without a key joins the group of the next command that has one (so `TIME` asked
/// first is read on the node of the data it is compared with), or of the last one.
pub(crate) fn split(cmds: &[&Cmd]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut waiting: Vec<usize> = Vec::new();
    for (i, cmd) in cmds.iter().enumerate() {
        let Some(slot) = slot_of(cmd) else {
            waiting.push(i);
            continue;
        };
        let at = match groups.iter().position(|g| g.slot == Some(slot)) {
            Some(at) => at,
            None => {
                groups.push(Group {
                    slot: Some(slot),
                    positions: Vec::new(),
                });
                groups.len() - 1
            }
        };
        groups[at].positions.append(&mut waiting);
        groups[at].positions.push(i);
    }
    if !waiting.is_empty() {
        match groups.last_mut() {
            Some(last) => last.positions.append(&mut waiting),
            None => groups.push(Group {
                slot: None,
                positions: waiting,
            }),
        }
    }
    groups
}

/// A primary's address, from `CLUSTER SLOTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Node {
    /// Where a command for this node goes.
    pub(crate) fn route(&self) -> SingleNodeRoutingInfo {
        SingleNodeRoutingInfo::ByAddress {
            host: self.host.clone(),
            port: self.port,
        }
    }
}

/// The primaries named by an answer to `CLUSTER SLOTS` (`[[start, end, [host, port, id],
/// replicas…], …]`), each once.
pub(crate) fn primaries(slots: &Value) -> Option<Vec<Node>> {
    let Value::Array(ranges) = slots else {
        return None;
    };
    let mut nodes: Vec<Node> = Vec::new();
    for range in ranges {
        let Value::Array(parts) = range else {
            return None;
        };
        let Some(Value::Array(primary)) = parts.get(2) else {
            return None;
        };
        let host = match primary.first()? {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let port = match primary.get(1)? {
            Value::Int(p) => u16::try_from(*p).ok()?,
            _ => return None,
        };
        let node = Node { host, port };
        if !nodes.contains(&node) {
            nodes.push(node);
        }
    }
    Some(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(parts: &[&str]) -> Cmd {
        let mut c = redis::cmd(parts[0]);
        for p in &parts[1..] {
            c.arg(*p);
        }
        c
    }

    #[test]
    fn keys_scripts_and_keyless_commands_find_their_slot() {
        let a = Slot::for_key("{p:a}");
        assert_eq!(slot_of(&cmd(&["GET", "{p:a}:t:1"])), Some(a));
        assert_eq!(
            slot_of(&cmd(&["EVALSHA", "abc", "1", "{p:a}", ""])),
            Some(a)
        );
        assert_eq!(slot_of(&cmd(&["EVALSHA", "abc", "0"])), None);
        assert_eq!(slot_of(&cmd(&["TIME"])), None);
        assert_eq!(slot_of(&cmd(&["SCRIPT", "LOAD", "return 1"])), None);
    }

    #[test]
    fn pipelines_split_per_slot_with_keyless_commands_joining_the_next() {
        let cmds = [
            cmd(&["TIME"]),
            cmd(&["GET", "{p:a}:t:1"]),
            cmd(&["GET", "{p:b}:t:2"]),
            cmd(&["GET", "{p:a}:t:3"]),
            cmd(&["SCRIPT", "LOAD", "x"]),
            cmd(&["EVALSHA", "s", "1", "{p:b}"]),
            cmd(&["WAIT", "1", "100"]),
        ];
        let groups = split(&cmds.iter().collect::<Vec<_>>());
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].slot, Some(Slot::for_key("{p:a}")));
        assert_eq!(groups[0].positions, vec![0, 1, 3]);
        assert_eq!(groups[1].positions, vec![2, 4, 5, 6]);
        let alone = split(&[&cmd(&["TIME"])]);
        assert_eq!(alone.len(), 1);
        assert_eq!(alone[0].slot, None);
    }

    #[test]
    fn primaries_are_read_from_cluster_slots_once_each() {
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let range = |start: i64, port: i64| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(start + 1),
                node(port),
                node(port + 3),
            ])
        };
        let answer = Value::Array(vec![range(0, 7000), range(2, 7001), range(4, 7000)]);
        let nodes = primaries(&answer).expect("parses");
        assert_eq!(
            nodes,
            vec![
                Node {
                    host: "127.0.0.1".into(),
                    port: 7000
                },
                Node {
                    host: "127.0.0.1".into(),
                    port: 7001
                },
            ]
        );
        assert!(primaries(&Value::Nil).is_none());
    }
}
