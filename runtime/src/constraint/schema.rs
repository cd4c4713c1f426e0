//! JSON Schema → a small graph of nodes the byte matcher walks.
//!
//! The supported subset is what structured-output users send (Ollama's
//! `format`, OpenAI's `response_format`, Pydantic's `model_json_schema()`):
//!
//! - `type`: `object` (`properties`, `required`, `additionalProperties`),
//!   `array` (`items`, `minItems`, `maxItems`), `string` (`minLength`,
//!   `maxLength`), `integer` / `number` (`minimum`, `maximum`,
//!   `exclusiveMinimum`, `exclusiveMaximum`), `boolean`, `null`, or a list of
//!   types; `enum`, `const`; `anyOf` / `oneOf` whose alternatives start
//!   differently (e.g. `Optional[int]`); `allOf` with one member; `nullable`;
//!   local `$ref` (`#/$defs/…`, `#/definitions/…`), not recursive.
//! - Annotations are ignored (`title`, `description`, `default`, `examples`,
//!   `format`, …): they assert nothing.
//! - Keywords that assert something this matcher cannot enforce (`pattern`,
//!   `not`, `if`, `uniqueItems`, `multipleOf`, `prefixItems`, …) are refused
//!   with an error naming them, so "matches the schema" is never a lie.
//!
//! How objects are written: listed properties in schema order, each optional
//! one may be skipped, required ones never; no other keys are generated (an
//! `additionalProperties` schema only matters for objects without
//! `properties`, which become free-form maps). Free-form values (`{}`,
//! `format: "json"`) nest at most [`ANY_DEPTH`] levels.

use super::json::{quote, Json};
use super::number::{Bound, NumSpec};

/// Index of a node in [`Schema::nodes`].
pub(crate) type NodeId = u32;

/// How deep free-form values (`{}` / `"json"`) may nest.
pub const ANY_DEPTH: u32 = 8;
/// Most properties of one object and values of one `enum`.
pub const MAX_ALTERNATIVES: usize = 64;
/// Most nodes one schema may compile to.
const MAX_NODES: usize = 20_000;
/// Deepest schema nesting accepted.
const MAX_SCHEMA_DEPTH: u32 = 48;
/// Largest `minLength` / `minItems` honoured (the minimal completion must stay short).
const MAX_MIN_COUNT: u64 = 256;

/// A property of a typed object.
#[derive(Debug, Clone)]
pub(crate) struct Prop {
    /// The key as JSON text, quotes included.
    pub key: Vec<u8>,
    /// Its value's node.
    pub node: NodeId,
    /// Listed in `required`.
    pub required: bool,
}

/// One node of a compiled schema.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// An object with listed properties, written in order.
    Object { props: Vec<Prop> },
    /// An object with free keys whose values are `value`.
    Map { value: NodeId },
    /// An array.
    Array {
        items: NodeId,
        min: u32,
        max: Option<u32>,
    },
    /// A string of `min..=max` characters.
    Str { min: u32, max: Option<u32> },
    /// A number.
    Num(NumSpec),
    /// One of these JSON texts exactly (`enum`, `const`, `true`/`false`, `null`).
    Lits(Vec<Vec<u8>>),
    /// One of several nodes, chosen by the first byte.
    AnyOf {
        alts: Vec<NodeId>,
        /// First byte → index in `alts` (255: none).
        dispatch: Box<[u8; 256]>,
    },
}

/// Why a schema cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON schema {path}: {msg}")]
pub struct SchemaError {
    /// Where in the schema (`/properties/age`).
    pub path: String,
    /// What is wrong.
    pub msg: String,
}

/// A compiled JSON schema: what structured output must produce.
#[derive(Debug, Clone)]
pub struct JsonSchema {
    pub(crate) nodes: Vec<Node>,
    pub(crate) root: NodeId,
    /// Shortest JSON text of each node.
    pub(crate) min_text: Vec<Vec<u8>>,
    /// Longest key text and longest minimal value (for the budget look-ahead).
    pub(crate) max_growth: usize,
}

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "example",
    "format",
    "$schema",
    "$id",
    "$comment",
    "$anchor",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentEncoding",
    "contentMediaType",
    "discriminator",
    "strict",
    "name",
];

/// Keywords handled below.
const HANDLED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "unevaluatedProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "nullable",
    "$ref",
    "$defs",
    "definitions",
];

struct Compiler<'a> {
    root: &'a Json,
    nodes: Vec<Node>,
    /// `$ref`s being expanded (recursion check).
    refs: Vec<String>,
    /// Free-form node per depth, built on demand.
    any: Vec<Option<NodeId>>,
}

fn err(path: &str, msg: impl Into<String>) -> SchemaError {
    SchemaError {
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
        msg: msg.into(),
    }
}

impl JsonSchema {
    /// Any JSON object (Ollama `format: "json"`, OpenAI `json_object`).
    pub fn any_object() -> JsonSchema {
        let doc = Json::Object(vec![("type".into(), Json::String("object".into()))]);
        // A constant schema: cannot fail.
        match JsonSchema::compile(&doc) {
            Ok(s) => s,
            Err(_) => unreachable_schema(),
        }
    }

    /// Compiles a schema document.
    pub fn compile(doc: &Json) -> Result<JsonSchema, SchemaError> {
        let mut c = Compiler {
            root: doc,
            nodes: Vec::new(),
            refs: Vec::new(),
            any: vec![None; ANY_DEPTH as usize + 1],
        };
        let root = c.node(doc, "", 0)?;
        let nodes = c.nodes;
        let mut min_text: Vec<Option<Vec<u8>>> = vec![None; nodes.len()];
        for id in 0..nodes.len() {
            min_of(&nodes, id as NodeId, &mut min_text, 0)?;
        }
        let min_text: Vec<Vec<u8>> = min_text
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        let longest_min = min_text.iter().map(Vec::len).max().unwrap_or(0);
        let longest_key = nodes
            .iter()
            .filter_map(|n| match n {
                Node::Object { props } => props.iter().map(|p| p.key.len()).max(),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        Ok(JsonSchema {
            nodes,
            root,
            min_text,
            max_growth: longest_min + longest_key + 8,
        })
    }

    /// Compiles a schema given as a `serde_json::Value` (property order is lost:
    /// prefer [`JsonSchema::compile`] with a [`Json`] read from the request text).
    pub fn from_value(v: &serde_json::Value) -> Result<JsonSchema, SchemaError> {
        JsonSchema::compile(&Json::from_value(v))
    }

    /// The shortest JSON text this schema accepts.
    pub fn min_text(&self) -> &[u8] {
        self.min_text
            .get(self.root as usize)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// Never reached: the constant free-object schema always compiles.
fn unreachable_schema() -> JsonSchema {
    JsonSchema {
        nodes: vec![Node::Lits(vec![b"{}".to_vec()])],
        root: 0,
        min_text: vec![b"{}".to_vec()],
        max_growth: 8,
    }
}

fn min_of(
    nodes: &[Node],
    id: NodeId,
    memo: &mut Vec<Option<Vec<u8>>>,
    depth: u32,
) -> Result<Vec<u8>, SchemaError> {
    if let Some(Some(t)) = memo.get(id as usize) {
        return Ok(t.clone());
    }
    if depth > MAX_SCHEMA_DEPTH * 2 {
        return Err(err("", "schema nests too deeply"));
    }
    let Some(node) = nodes.get(id as usize) else {
        return Err(err("", "internal: bad node id"));
    };
    let t = match node {
        Node::Object { props } => {
            let mut t = b"{".to_vec();
            let mut first = true;
            for p in props.iter().filter(|p| p.required) {
                if !first {
                    t.push(b',');
                }
                first = false;
                t.extend_from_slice(&p.key);
                t.push(b':');
                t.extend(min_of(nodes, p.node, memo, depth + 1)?);
            }
            t.push(b'}');
            t
        }
        Node::Map { .. } => b"{}".to_vec(),
        Node::Array { items, min, .. } => {
            let item = min_of(nodes, *items, memo, depth + 1)?;
            let mut t = b"[".to_vec();
            for i in 0..*min {
                if i > 0 {
                    t.push(b',');
                }
                t.extend_from_slice(&item);
            }
            t.push(b']');
            t
        }
        Node::Str { min, .. } => {
            let mut t = b"\"".to_vec();
            t.extend(std::iter::repeat_n(b'a', *min as usize));
            t.push(b'"');
            t
        }
        Node::Num(spec) => super::number::NumState::START
            .shortest_completion(spec)
            .ok_or_else(|| err("", "internal: a number node with no value"))?,
        Node::Lits(lits) => lits
            .iter()
            .min_by_key(|l| l.len())
            .cloned()
            .ok_or_else(|| err("", "internal: empty literal set"))?,
        Node::AnyOf { alts, .. } => {
            let mut best: Option<Vec<u8>> = None;
            for &a in alts {
                let t = min_of(nodes, a, memo, depth + 1)?;
                if best.as_ref().is_none_or(|b| t.len() < b.len()) {
                    best = Some(t);
                }
            }
            best.ok_or_else(|| err("", "internal: empty anyOf"))?
        }
    };
    if let Some(slot) = memo.get_mut(id as usize) {
        *slot = Some(t.clone());
    }
    Ok(t)
}

/// The first bytes a node's text can start with.
fn first_bytes(nodes: &[Node], id: NodeId) -> [bool; 256] {
    let mut set = [false; 256];
    match nodes.get(id as usize) {
        Some(Node::Object { .. } | Node::Map { .. }) => set[b'{' as usize] = true,
        Some(Node::Array { .. }) => set[b'[' as usize] = true,
        Some(Node::Str { .. }) => set[b'"' as usize] = true,
        Some(Node::Num(_)) => {
            for b in b"-0123456789" {
                set[*b as usize] = true;
            }
        }
        Some(Node::Lits(lits)) => {
            for l in lits {
                if let Some(&b) = l.first() {
                    set[b as usize] = true;
                }
            }
        }
        Some(Node::AnyOf { dispatch, .. }) => {
            for (b, &d) in dispatch.iter().enumerate() {
                set[b] = d != 255;
            }
        }
        None => {}
    }
    set
}

impl<'a> Compiler<'a> {
    fn push(&mut self, n: Node, path: &str) -> Result<NodeId, SchemaError> {
        if self.nodes.len() >= MAX_NODES {
            return Err(err(
                path,
                format!("schema is too large (over {MAX_NODES} nodes)"),
            ));
        }
        self.nodes.push(n);
        Ok((self.nodes.len() - 1) as NodeId)
    }

    /// A free-form value nested `depth` levels deep.
    fn any(&mut self, depth: u32) -> Result<NodeId, SchemaError> {
        let d = depth.min(ANY_DEPTH);
        if let Some(Some(id)) = self.any.get(d as usize) {
            return Ok(*id);
        }
        let mut alts = Vec::new();
        if d < ANY_DEPTH {
            let inner = self.any(d + 1)?;
            alts.push(self.push(Node::Map { value: inner }, "")?);
            alts.push(self.push(
                Node::Array {
                    items: inner,
                    min: 0,
                    max: None,
                },
                "",
            )?);
        }
        alts.push(self.push(Node::Str { min: 0, max: None }, "")?);
        let num = NumSpec::new(false, None, None).map_err(|m| err("", m))?;
        alts.push(self.push(Node::Num(num), "")?);
        alts.push(self.push(
            Node::Lits(vec![b"true".to_vec(), b"false".to_vec(), b"null".to_vec()]),
            "",
        )?);
        let id = self.any_of(alts, "")?;
        if let Some(slot) = self.any.get_mut(d as usize) {
            *slot = Some(id);
        }
        Ok(id)
    }

    /// Combines alternatives: merges literal sets, numbers and strings that
    /// overlap, and refuses alternatives that would start with the same byte.
    fn any_of(&mut self, alts: Vec<NodeId>, path: &str) -> Result<NodeId, SchemaError> {
        // Flatten nested anyOf, merge literal alternatives.
        let mut flat: Vec<NodeId> = Vec::new();
        let mut lits: Vec<Vec<u8>> = Vec::new();
        let mut stack: Vec<NodeId> = alts;
        stack.reverse();
        while let Some(a) = stack.pop() {
            match self.nodes.get(a as usize) {
                Some(Node::AnyOf { alts, .. }) => {
                    let mut inner = alts.clone();
                    inner.reverse();
                    stack.extend(inner);
                }
                Some(Node::Lits(l)) => {
                    for t in l {
                        if !lits.contains(t) {
                            lits.push(t.clone());
                        }
                    }
                }
                Some(_) => flat.push(a),
                None => return Err(err(path, "internal: bad node id")),
            }
        }
        // A free number covers every other number, a free string every other string.
        let nodes = &self.nodes;
        let is_num = |a: NodeId| matches!(nodes.get(a as usize), Some(Node::Num(_)));
        let is_str = |a: NodeId| matches!(nodes.get(a as usize), Some(Node::Str { .. }));
        let free_num = flat.iter().copied().find(|&a| {
            matches!(nodes.get(a as usize), Some(Node::Num(s)) if !s.integer && s.bounds.is_none())
        });
        let free_str = flat
            .iter()
            .copied()
            .find(|&a| matches!(nodes.get(a as usize), Some(Node::Str { min: 0, max: None })));
        flat.retain(|&a| {
            (free_num.is_none() || !is_num(a) || Some(a) == free_num)
                && (free_str.is_none() || !is_str(a) || Some(a) == free_str)
        });
        // Literals that another alternative already produces are dropped
        // (e.g. a string enum next to a free string).
        if !lits.is_empty() {
            let covered: Vec<[bool; 256]> =
                flat.iter().map(|&a| first_bytes(&self.nodes, a)).collect();
            let nodes = &self.nodes;
            lits.retain(|l| {
                let Some(&b0) = l.first() else { return false };
                !covered.iter().zip(&flat).any(|(set, &a)| {
                    set[b0 as usize]
                        && match nodes.get(a as usize) {
                            Some(Node::Str { min: 0, max: None }) => true,
                            Some(Node::Num(s)) => s.bounds.is_none() && !s.integer,
                            _ => false,
                        }
                })
            });
            if lits.len() > MAX_ALTERNATIVES {
                return Err(err(
                    path,
                    format!("more than {MAX_ALTERNATIVES} enum/const values"),
                ));
            }
            if !lits.is_empty() {
                let id = self.push(Node::Lits(lits), path)?;
                flat.push(id);
            }
        }
        if flat.len() == 1 {
            return Ok(flat[0]);
        }
        if flat.is_empty() {
            return Err(err(path, "no alternative left"));
        }
        let mut dispatch = Box::new([255u8; 256]);
        for (i, &a) in flat.iter().enumerate() {
            let set = first_bytes(&self.nodes, a);
            for (b, &on) in set.iter().enumerate() {
                if !on {
                    continue;
                }
                if dispatch[b] != 255 {
                    return Err(err(
                        path,
                        format!(
                            "anyOf/oneOf alternatives that both start with '{}' are not supported (e.g. two objects, or an enum value and a number); use distinct types",
                            char::from(b as u8).escape_default()
                        ),
                    ));
                }
                dispatch[b] = i as u8;
            }
        }
        self.push(
            Node::AnyOf {
                alts: flat,
                dispatch,
            },
            path,
        )
    }

    fn resolve_ref(&self, r: &str, path: &str) -> Result<&'a Json, SchemaError> {
        if r == "#" {
            return Ok(self.root);
        }
        let Some(pointer) = r.strip_prefix("#/") else {
            return Err(err(
                path,
                format!("$ref '{r}': only local references (#/$defs/...) are supported"),
            ));
        };
        let mut cur: &'a Json = self.root;
        for raw in pointer.split('/') {
            let part = raw.replace("~1", "/").replace("~0", "~");
            cur = match cur {
                Json::Object(_) => cur.get(&part),
                Json::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            }
            .ok_or_else(|| err(path, format!("$ref '{r}' points to nothing")))?;
        }
        Ok(cur)
    }

    fn node(&mut self, s: &Json, path: &str, depth: u32) -> Result<NodeId, SchemaError> {
        if depth > MAX_SCHEMA_DEPTH {
            return Err(err(path, "schema nests too deeply"));
        }
        let members = match s {
            Json::Bool(true) => return self.any(0),
            Json::Bool(false) => return Err(err(path, "schema `false` matches nothing")),
            Json::Object(m) => m,
            other => {
                return Err(err(
                    path,
                    format!("a schema must be an object, not {}", other.type_name()),
                ))
            }
        };
        for (k, _) in members {
            if !HANDLED.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()) {
                return Err(err(
                    path,
                    format!("keyword '{k}' is not supported by structured output"),
                ));
            }
        }
        if let Some(r) = s.get("$ref") {
            let r = r
                .as_str()
                .ok_or_else(|| err(path, "$ref must be a string"))?
                .to_string();
            if self.refs.contains(&r) {
                return Err(err(path, format!("recursive $ref '{r}' is not supported")));
            }
            let target = self.resolve_ref(&r, path)?;
            self.refs.push(r.clone());
            let id = self.node(target, &format!("{path}/$ref({r})"), depth + 1);
            self.refs.pop();
            return id;
        }
        if let Some(all) = s.get("allOf") {
            match all {
                Json::Array(a) if a.len() == 1 => {
                    return self.node(&a[0], &format!("{path}/allOf/0"), depth + 1)
                }
                _ => return Err(err(path, "allOf is supported with exactly one member")),
            }
        }
        let nullable = matches!(s.get("nullable"), Some(Json::Bool(true)));
        let id = self.node_inner(s, path, depth)?;
        if nullable {
            let null = self.push(Node::Lits(vec![b"null".to_vec()]), path)?;
            return self.any_of(vec![id, null], path);
        }
        Ok(id)
    }

    fn node_inner(&mut self, s: &Json, path: &str, depth: u32) -> Result<NodeId, SchemaError> {
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = s.get(key) {
                let Json::Array(alts) = alts else {
                    return Err(err(path, format!("{key} must be an array")));
                };
                if alts.is_empty() {
                    return Err(err(path, format!("{key} is empty")));
                }
                let mut ids = Vec::new();
                for (i, a) in alts.iter().enumerate() {
                    ids.push(self.node(a, &format!("{path}/{key}/{i}"), depth + 1)?);
                }
                return self.any_of(ids, path);
            }
        }
        if let Some(c) = s.get("const") {
            return self.push(Node::Lits(vec![c.to_json_string().into_bytes()]), path);
        }
        if let Some(e) = s.get("enum") {
            let Json::Array(vals) = e else {
                return Err(err(path, "enum must be an array"));
            };
            if vals.is_empty() {
                return Err(err(path, "enum is empty"));
            }
            if vals.len() > MAX_ALTERNATIVES {
                return Err(err(
                    path,
                    format!(
                        "enum has {} values; at most {MAX_ALTERNATIVES} are supported",
                        vals.len()
                    ),
                ));
            }
            let mut lits: Vec<Vec<u8>> = Vec::new();
            for v in vals {
                let t = v.to_json_string().into_bytes();
                if !lits.contains(&t) {
                    lits.push(t);
                }
            }
            // Numbers like 1 and 12 are prefixes of each other; the matcher handles
            // that, but 1 and 1.5 style overlaps need no special care either.
            let id = self.push(Node::Lits(lits), path)?;
            return self.any_of(vec![id], path);
        }
        let types: Vec<String> = match s.get("type") {
            None => {
                // Infer from the keywords present.
                if s.get("properties").is_some() || s.get("additionalProperties").is_some() {
                    vec!["object".into()]
                } else if s.get("items").is_some() {
                    vec!["array".into()]
                } else {
                    return self.any(0);
                }
            }
            Some(Json::String(t)) => vec![t.clone()],
            Some(Json::Array(ts)) => {
                let mut out = Vec::new();
                for t in ts {
                    out.push(
                        t.as_str()
                            .ok_or_else(|| err(path, "type list must hold strings"))?
                            .to_string(),
                    );
                }
                if out.is_empty() {
                    return Err(err(path, "type list is empty"));
                }
                out
            }
            Some(other) => {
                return Err(err(
                    path,
                    format!("type must be a string or a list, not {}", other.type_name()),
                ))
            }
        };
        let mut ids = Vec::new();
        for t in &types {
            ids.push(self.typed(t, s, path, depth)?);
        }
        if ids.len() == 1 {
            Ok(ids[0])
        } else {
            self.any_of(ids, path)
        }
    }

    fn count(&self, s: &Json, key: &str, path: &str) -> Result<Option<u64>, SchemaError> {
        match s.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e15)
                        .map(|f| f as u64)
                })
                .map(Some)
                .ok_or_else(|| err(path, format!("{key} must be a non-negative integer"))),
        }
    }

    fn typed(&mut self, t: &str, s: &Json, path: &str, depth: u32) -> Result<NodeId, SchemaError> {
        match t {
            "object" => self.object(s, path, depth),
            "array" => {
                let items = match s.get("items") {
                    None => self.any(1)?,
                    Some(i) => self.node(i, &format!("{path}/items"), depth + 1)?,
                };
                let min = self.count(s, "minItems", path)?.unwrap_or(0);
                let max = self.count(s, "maxItems", path)?;
                if min > MAX_MIN_COUNT {
                    return Err(err(
                        path,
                        format!("minItems above {MAX_MIN_COUNT} is not supported"),
                    ));
                }
                if max.is_some_and(|m| m < min) {
                    return Err(err(path, "maxItems is below minItems"));
                }
                self.push(
                    Node::Array {
                        items,
                        min: min as u32,
                        max: max.map(|m| m.min(u64::from(u32::MAX)) as u32),
                    },
                    path,
                )
            }
            "string" => {
                let min = self.count(s, "minLength", path)?.unwrap_or(0);
                let max = self.count(s, "maxLength", path)?;
                if min > MAX_MIN_COUNT {
                    return Err(err(
                        path,
                        format!("minLength above {MAX_MIN_COUNT} is not supported"),
                    ));
                }
                if max.is_some_and(|m| m < min) {
                    return Err(err(path, "maxLength is below minLength"));
                }
                self.push(
                    Node::Str {
                        min: min as u32,
                        max: max.map(|m| m.min(u64::from(u32::MAX - 1)) as u32),
                    },
                    path,
                )
            }
            "integer" | "number" => {
                let bound = |key: &str, excl_key: &str| -> Result<Option<Bound>, SchemaError> {
                    let incl = match s.get(key) {
                        None => None,
                        Some(v) => Some(
                            v.as_f64()
                                .ok_or_else(|| err(path, format!("{key} must be a number")))?,
                        ),
                    };
                    let excl = match s.get(excl_key) {
                        None | Some(Json::Bool(false)) => None,
                        // Draft 4: exclusiveMinimum: true modifies minimum.
                        Some(Json::Bool(true)) => {
                            return Ok(incl.map(|value| Bound {
                                value,
                                exclusive: true,
                            }))
                        }
                        Some(v) => Some(
                            v.as_f64()
                                .ok_or_else(|| err(path, format!("{excl_key} must be a number")))?,
                        ),
                    };
                    Ok(match (incl, excl) {
                        (None, None) => None,
                        (Some(v), None) => Some(Bound {
                            value: v,
                            exclusive: false,
                        }),
                        (None, Some(v)) => Some(Bound {
                            value: v,
                            exclusive: true,
                        }),
                        (Some(a), Some(b)) => Some(Bound {
                            // the tighter of the two
                            value: if key == "minimum" { a.max(b) } else { a.min(b) },
                            exclusive: if key == "minimum" { b >= a } else { b <= a },
                        }),
                    })
                };
                let lo = bound("minimum", "exclusiveMinimum")?;
                let hi = bound("maximum", "exclusiveMaximum")?;
                let spec = NumSpec::new(t == "integer", lo, hi).map_err(|m| err(path, m))?;
                self.push(Node::Num(spec), path)
            }
            "boolean" => self.push(Node::Lits(vec![b"true".to_vec(), b"false".to_vec()]), path),
            "null" => self.push(Node::Lits(vec![b"null".to_vec()]), path),
            other => Err(err(path, format!("unknown type '{other}'"))),
        }
    }

    fn object(&mut self, s: &Json, path: &str, depth: u32) -> Result<NodeId, SchemaError> {
        let mut required: Vec<String> = Vec::new();
        match s.get("required") {
            None => {}
            Some(Json::Array(r)) => {
                for v in r {
                    required.push(
                        v.as_str()
                            .ok_or_else(|| err(path, "required must list strings"))?
                            .to_string(),
                    );
                }
            }
            Some(_) => return Err(err(path, "required must be an array")),
        }
        let props_doc: &[(String, Json)] = match s.get("properties") {
            None => &[],
            Some(Json::Object(m)) => m,
            Some(_) => return Err(err(path, "properties must be an object")),
        };
        if props_doc.is_empty() && required.is_empty() {
            // A free-form map.
            let value = match s.get("additionalProperties") {
                None | Some(Json::Bool(true)) => self.any(1)?,
                Some(Json::Bool(false)) => {
                    return self.push(Node::Lits(vec![b"{}".to_vec()]), path);
                }
                Some(v) => self.node(v, &format!("{path}/additionalProperties"), depth + 1)?,
            };
            return self.push(Node::Map { value }, path);
        }
        let mut props: Vec<Prop> = Vec::new();
        for (name, sub) in props_doc {
            if props.iter().any(|p| p.key == quote(name).as_bytes()) {
                continue;
            }
            let node = self.node(sub, &format!("{path}/properties/{name}"), depth + 1)?;
            props.push(Prop {
                key: quote(name).into_bytes(),
                node,
                required: required.contains(name),
            });
        }
        // Required keys with no schema of their own: any value.
        for name in &required {
            let key = quote(name).into_bytes();
            if !props.iter().any(|p| p.key == key) {
                let node = self.any(1)?;
                props.push(Prop {
                    key,
                    node,
                    required: true,
                });
            }
        }
        if props.len() > MAX_ALTERNATIVES {
            return Err(err(
                path,
                format!(
                    "{} properties; at most {MAX_ALTERNATIVES} per object are supported",
                    props.len()
                ),
            ));
        }
        self.push(Node::Object { props }, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(s: &str) -> Result<JsonSchema, SchemaError> {
        JsonSchema::compile(&serde_json::from_str::<Json>(s).unwrap())
    }

    #[test]
    fn minimal_texts() {
        let s = compile(
            r#"{"type":"object","properties":{"name":{"type":"string","minLength":2},
                "age":{"type":"integer","minimum":18},"tags":{"type":"array"}},
                "required":["name","age"]}"#,
        )
        .unwrap();
        assert_eq!(s.min_text(), br#"{"name":"aa","age":18}"#);
        assert_eq!(JsonSchema::any_object().min_text(), b"{}");
        let e = compile(r#"{"enum":["red","green",3]}"#).unwrap();
        assert_eq!(e.min_text(), b"3");
        let opt = compile(r#"{"anyOf":[{"type":"integer"},{"type":"null"}]}"#).unwrap();
        assert_eq!(opt.min_text(), b"0");
    }

    #[test]
    fn pydantic_refs() {
        let s = compile(
            r##"{"$defs":{"Address":{"properties":{"city":{"title":"City","type":"string"}},
                 "required":["city"],"title":"Address","type":"object"}},
                 "properties":{"home":{"$ref":"#/$defs/Address"},
                 "age":{"anyOf":[{"type":"integer"},{"type":"null"}],"default":null}},
                 "required":["home"],"title":"Person","type":"object"}"##,
        )
        .unwrap();
        assert_eq!(s.min_text(), br#"{"home":{"city":""}}"#);
    }

    #[test]
    fn refusals_name_the_problem() {
        let e = compile(r#"{"type":"string","pattern":"^a+$"}"#).unwrap_err();
        assert!(e.to_string().contains("'pattern'"), "{e}");
        let e = compile(r##"{"$defs":{"N":{"type":"object","properties":{"next":{"$ref":"#/$defs/N"}}}},"$ref":"#/$defs/N"}"##)
            .unwrap_err();
        assert!(e.to_string().contains("recursive"), "{e}");
        let e = compile(r#"{"anyOf":[{"type":"object","properties":{"a":{}}},{"type":"object","properties":{"b":{}}}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("start with '{'"), "{e}");
        let e = compile(r#"{"type":"integer","minimum":5,"maximum":4}"#).unwrap_err();
        assert!(e.to_string().contains("minimum"), "{e}");
        assert!(compile(r#"{"type":"wat"}"#).is_err());
        assert!(compile("false").is_err());
        assert!(compile("[1]").is_err());
    }
}
