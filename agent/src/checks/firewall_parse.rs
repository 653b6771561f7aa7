//! Parsers for the rule listings the firewall check reads: `nft -j list ruleset`, the text
//! form of `nft list ruleset`, and `iptables-save` / `ip6tables-save`, into [`Chain`]s.

use super::{Chain, Rule, Verdict};

/// `nft -j list ruleset`; `None` when it is not nft's JSON.
pub(super) fn parse_nft_json(text: &str) -> Option<Vec<Chain>> {
    use serde_json::Value;
    let value: Value = serde_json::from_str(text).ok()?;
    let items = value.get("nftables")?.as_array()?;
    let s = |v: &Value, key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_owned);
    let mut chains: Vec<Chain> = items
        .iter()
        .filter_map(|item| item.get("chain"))
        .map(|c| Chain {
            family: s(c, "family").unwrap_or_default(),
            table: s(c, "table").unwrap_or_default(),
            name: s(c, "name").unwrap_or_default(),
            hook: s(c, "hook"),
            policy: s(c, "policy").map(|p| p.to_ascii_lowercase()),
            rules: Vec::new(),
        })
        .collect();
    for rule in items.iter().filter_map(|item| item.get("rule")) {
        let (family, table, name) = (s(rule, "family"), s(rule, "table"), s(rule, "chain"));
        let Some(chain) = chains.iter_mut().find(|c| {
            Some(&c.family) == family.as_ref()
                && Some(&c.table) == table.as_ref()
                && Some(&c.name) == name.as_ref()
        }) else {
            continue;
        };
        let statements = rule.get("expr").and_then(Value::as_array);
        chain
            .rules
            .push(json_rule(statements.map_or(&[][..], Vec::as_slice)));
    }
    Some(chains)
}

fn json_rule(statements: &[serde_json::Value]) -> Rule {
    let mut rule = Rule::default();
    let mut matches = Vec::new();
    for statement in statements {
        let Some((key, value)) = statement.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        if let Some(verdict) = json_verdict(key, value) {
            rule.verdict = Some(verdict);
            continue;
        }
        match key.as_str() {
            // Statements that act on every packet they see without matching.
            "counter" | "log" | "mangle" | "continue" => {}
            "xt" if value.get("type").and_then(|t| t.as_str()) == Some("target") => {}
            "vmap" => {
                matches.push(format!(
                    "{} vmap",
                    operand(value.get("key").unwrap_or(&serde_json::Value::Null))
                ));
                if let Some(data) = value.get("data") {
                    mapped_verdicts(data, &mut rule.mapped);
                }
            }
            "match" => {
                let op = value
                    .get("op")
                    .and_then(|o| o.as_str())
                    .filter(|o| !matches!(*o, "==" | "in"));
                let parts = [
                    value.get("left").map(operand),
                    op.map(str::to_owned),
                    value.get("right").map(operand),
                ];
                matches.push(parts.into_iter().flatten().collect::<Vec<_>>().join(" "));
            }
            "xt" => matches.push(format!(
                "xt match {}",
                value.get("name").and_then(|n| n.as_str()).unwrap_or("?")
            )),
            other => matches.push(other.to_owned()),
        }
    }
    rule.matches = matches.join(" ");
    rule
}

fn json_verdict(key: &str, value: &serde_json::Value) -> Option<Verdict> {
    let target = || {
        value
            .get("target")
            .and_then(|t| t.as_str())
            .map(str::to_owned)
    };
    Some(match key {
        "accept" => Verdict::Accept,
        "drop" => Verdict::Drop("drop"),
        "reject" => Verdict::Drop("reject"),
        "return" => Verdict::Return,
        "jump" => Verdict::Jump(target()?),
        "goto" => Verdict::Goto(target()?),
        "queue" => Verdict::Other("queue".into()),
        _ => return None,
    })
}

/// Verdicts anywhere in a verdict map's data.
fn mapped_verdicts(value: &serde_json::Value, out: &mut Vec<Verdict>) {
    match value {
        serde_json::Value::Array(items) => items.iter().for_each(|v| mapped_verdicts(v, out)),
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match json_verdict(key, v) {
                    Some(verdict) => out.push(verdict),
                    None => mapped_verdicts(v, out),
                }
            }
        }
        _ => {}
    }
}

/// An operand of a JSON match, roughly as `nft` writes it.
fn operand(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items.iter().map(operand).collect::<Vec<_>>().join(","),
        Value::Object(map) => {
            let Some((key, inner)) = map.iter().next() else {
                return String::new();
            };
            let field = |name: &str| inner.get(name).and_then(|v| v.as_str()).unwrap_or("");
            match key.as_str() {
                "set" => match inner {
                    Value::Array(items) => format!(
                        "{{ {} }}",
                        items.iter().map(operand).collect::<Vec<_>>().join(", ")
                    ),
                    other => operand(other),
                },
                "prefix" => format!("{}/{}", operand(&inner["addr"]), operand(&inner["len"])),
                "range" => match inner {
                    Value::Array(ends) if ends.len() == 2 => {
                        format!("{}-{}", operand(&ends[0]), operand(&ends[1]))
                    }
                    other => operand(other),
                },
                "payload" => format!("{} {}", field("protocol"), field("field")),
                "meta" => field("key").to_owned(),
                other if !field("key").is_empty() => format!("{other} {}", field("key")),
                other => other.to_owned(),
            }
        }
        Value::Null => String::new(),
    }
}

/// `nft list ruleset` text.
pub(super) fn parse_nft_text(text: &str) -> Vec<Chain> {
    let mut chains = Vec::new();
    let mut table = (String::new(), String::new());
    let mut current: Option<Chain> = None;
    // A rule or declaration, which a set or map in braces may spread over several lines.
    let mut pending = String::new();
    let mut depth = 0i64;
    for line in text.lines().map(str::trim) {
        let Some(chain) = &mut current else {
            // `table inet firewalld { # progname firewalld` for a table a process owns.
            let words = tokens(line);
            match words
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice()
            {
                ["table", family, name, "{"] => table = ((*family).into(), (*name).into()),
                ["chain", name, "{"] => {
                    current = Some(Chain {
                        family: table.0.clone(),
                        table: table.1.clone(),
                        name: (*name).to_owned(),
                        ..Chain::default()
                    });
                }
                _ => {}
            }
            continue;
        };
        if pending.is_empty() && line == "}" {
            chains.extend(current.take());
            continue;
        }
        pending.push_str(line);
        pending.push(' ');
        depth += braces(line);
        if depth > 0 {
            continue;
        }
        depth = 0;
        let statement = std::mem::take(&mut pending);
        let words = tokens(&statement);
        match words.first().map(String::as_str) {
            Some("type" | "policy") => {
                let word = |w: &String| w.trim_end_matches([';', ',']).to_owned();
                if let Some(at) = words.iter().position(|w| w == "hook") {
                    chain.hook = words.get(at + 1).map(word);
                }
                if let Some(at) = words.iter().position(|w| w == "policy") {
                    chain.policy = words.get(at + 1).map(|p| word(p).to_ascii_lowercase());
                }
            }
            Some("comment" | "devices") | None => {}
            Some(_) => chain.rules.push(text_rule(&words)),
        }
    }
    chains
}

/// One rule of `nft list ruleset`, as words.
fn text_rule(words: &[String]) -> Rule {
    let mut rule = Rule::default();
    let mut matches: Vec<&str> = Vec::new();
    let mut depth = 0i64;
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        let bare = word.trim_matches(|c| matches!(c, '{' | '}' | ',' | ';'));
        let next = || {
            words
                .get(i + 1)
                .map(|w| w.trim_end_matches([',', '}']).to_owned())
        };
        let verdict = match bare {
            "accept" => Some(Verdict::Accept),
            "drop" => Some(Verdict::Drop("drop")),
            "reject" => Some(Verdict::Drop("reject")),
            "return" => Some(Verdict::Return),
            "jump" => next().map(Verdict::Jump),
            "goto" => next().map(Verdict::Goto),
            "queue" => Some(Verdict::Other("queue".into())),
            _ => None,
        };
        if depth > 0 {
            // Inside a set or a verdict map.
            rule.mapped.extend(verdict);
            matches.push(word);
            depth += braces(word);
            i += 1;
            continue;
        }
        if verdict.is_some() {
            rule.verdict = verdict;
            break;
        }
        match word {
            "continue" => break,
            // `counter packets 1 bytes 60`, `counter name "x"`.
            "counter" => {
                i += 1;
                match words.get(i).map(String::as_str) {
                    Some("packets") => i += 4,
                    Some("name") => i += 2,
                    _ => {}
                }
            }
            // `log prefix "x" level info flags tcp sequence,options`
            "log" => {
                i += 1;
                while let Some(option) = words.get(i).map(String::as_str) {
                    match option {
                        "prefix" | "level" | "group" | "snaplen" | "queue-threshold" => i += 2,
                        "flags" => {
                            i += 1;
                            while words.get(i).is_some_and(|f| {
                                f.split(',').all(|f| {
                                    matches!(
                                        f,
                                        "tcp"
                                            | "ip"
                                            | "skuid"
                                            | "ether"
                                            | "all"
                                            | "sequence"
                                            | "options"
                                    )
                                })
                            }) {
                                i += 1;
                            }
                        }
                        _ => break,
                    }
                }
            }
            "comment" => i += 2,
            _ => {
                matches.push(word);
                depth += braces(word);
                i += 1;
            }
        }
    }
    rule.matches = matches.join(" ");
    rule
}

/// `iptables-save` or `ip6tables-save` output: the filter table's chains, of `family`.
pub(super) fn parse_iptables_save(text: &str, family: &str) -> Vec<Chain> {
    let mut chains: Vec<Chain> = Vec::new();
    let mut in_filter = false;
    for line in text.lines().map(str::trim) {
        if let Some(table) = line.strip_prefix('*') {
            in_filter = table == "filter";
            continue;
        }
        if !in_filter || line.starts_with('#') {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            let name = words.next().unwrap_or_default().to_owned();
            chains.push(Chain {
                family: family.into(),
                table: "filter".into(),
                hook: (name == "INPUT").then(|| "input".to_owned()),
                policy: words
                    .next()
                    .filter(|p| *p != "-")
                    .map(str::to_ascii_lowercase),
                name,
                rules: Vec::new(),
            });
            continue;
        }
        let mut words = tokens(line);
        // `iptables-save -c` puts the counters first: `[12:3456] -A INPUT ...`.
        if words.first().is_some_and(|w| w.starts_with('[')) {
            words.remove(0);
        }
        let (Some("-A"), Some(name)) = (words.first().map(String::as_str), words.get(1)) else {
            continue;
        };
        let rule = iptables_rule(&words[2..], &chains);
        if let Some(chain) = chains.iter_mut().find(|c| &c.name == name) {
            chain.rules.push(rule);
        }
    }
    chains
}

/// Targets that act on a packet and let it go on to the next rule.
const NON_TERMINATING: &[&str] = &[
    "LOG",
    "NFLOG",
    "ULOG",
    "MARK",
    "CONNMARK",
    "CLASSIFY",
    "AUDIT",
    "TRACE",
    "SET",
    "DSCP",
    "TOS",
    "TCPMSS",
    "TTL",
    "HL",
    "SECMARK",
    "CONNSECMARK",
    "CHECKSUM",
    "IDLETIMER",
    "LED",
    "RATEEST",
    "TEE",
];

/// One `-A CHAIN` rule's words after the chain name.
fn iptables_rule(words: &[String], chains: &[Chain]) -> Rule {
    let mut rule = Rule::default();
    let mut matches: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        match word {
            "-j" | "--jump" | "-g" | "--goto" => {
                let target = words.get(i + 1).map_or("", String::as_str);
                rule.verdict = match target {
                    "ACCEPT" => Some(Verdict::Accept),
                    "DROP" => Some(Verdict::Drop("drop")),
                    "REJECT" => Some(Verdict::Drop("reject")),
                    "RETURN" => Some(Verdict::Return),
                    t if chains.iter().any(|c| c.name == t) => {
                        Some(if matches!(word, "-g" | "--goto") {
                            Verdict::Goto(t.to_owned())
                        } else {
                            Verdict::Jump(t.to_owned())
                        })
                    }
                    t if NON_TERMINATING.contains(&t) => None,
                    t => Some(Verdict::Other(format!("-j {t}"))),
                };
                break;
            }
            "-m" if words.get(i + 1).is_some_and(|m| m == "comment") => i += 2,
            "--comment" => i += 2,
            _ => {
                matches.push(word);
                i += 1;
            }
        }
    }
    rule.matches = matches.join(" ");
    rule
}

/// Whitespace-separated words; a double-quoted string (with `\"` escapes) is one word, and
/// a word starting with `#` ends the line.
pub(super) fn tokens(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in line.chars() {
        if quoted {
            word.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
        } else if c.is_whitespace() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else if c == '#' && word.is_empty() {
            break;
        } else {
            if c == '"' {
                quoted = true;
            }
            word.push(c);
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Opening minus closing braces outside double quotes.
fn braces(text: &str) -> i64 {
    let mut quoted = false;
    let mut escaped = false;
    let mut depth = 0;
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            _ => {}
        }
    }
    depth
}
