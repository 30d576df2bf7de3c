//! The Cedar vocabulary: the built-in schema, its merge with operator `.cedarschema`
//! extensions, and the facts evaluation needs from it (which actions and types exist, which
//! attributes each resource type and each action's context declare).
//!
//! # Built-in vocabulary (no namespace)
//!
//! - Principals: `User` and `Agent`, both `in Group`.
//! - Resources: `Database`, `Table in Database`, `McpServer`, `Tool in McpServer`, `Host`,
//!   `Service`, `Endpoint`. Each may carry `classification: String` (`public`, `internal`,
//!   `confidential`, `restricted`) and `tags: Set<String>`; `Tool` also the MCP hints
//!   `readOnlyHint`, `destructiveHint`, `idempotentHint`, `openWorldHint` (all `Bool`). All
//!   attributes are optional, so policies test them with `has` first (strict validation
//!   insists).
//! - Actions: `db.read`, `db.write`, `db.ddl`, `db.privilege`, `db.export`, `db.destructive`,
//!   `db.unknown`, `mcp.call`, `http.request`, `exec`, `deploy`; each applies to both
//!   principal types and every built-in resource type.
//! - Context (common type `Context`):
//!   - `has_justification: Bool` — the attempt carries a non-blank justification;
//!   - `justification?: String`;
//!   - `on_behalf_of?: User` — the user an agent acts for;
//!   - `resource_count: Long` — how many resources the attempt touches;
//!   - `gate?`, `source?`, `ticket?: String` — copied from the attempt's context map.
//!
//! # How attempts fill entities and context
//!
//! Context attributes are filled per the *declared* context of the action, so operator
//! actions may declare their own record. `has_justification`, `justification`, `on_behalf_of`
//! and `resource_count` come from the attempt's own fields and never from its context map (a
//! client must not be able to claim a justification it did not give). Any other declared
//! `String`, `Long` or `Bool` attribute is taken from the context map entry of the same name
//! (`Long`/`Bool` values must parse, else evaluation fails closed). Undeclared map entries are
//! dropped: they cannot influence policy, and the audit log still records them.
//!
//! Resource entities get `classification` (when the attempt gives one) and `tags` (always, empty
//! when the attempt names none) if their type declares them with the built-in types. Other
//! declared `String`, `Long` or `Bool` attributes (such as the MCP hints) are read from tags of
//! the form `name=value`, e.g. `readOnlyHint=true`: `core::Resource` has no open attribute map.

use cedar_policy::{Entity, EntityTypeName, EntityUid, Schema, SchemaFragment};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

/// The built-in schema, in Cedar schema syntax.
pub const BUILTIN_SCHEMA: &str = include_str!("builtin.cedarschema");

/// The name the built-in schema goes by in error messages.
pub const BUILTIN_SCHEMA_NAME: &str = "<built-in schema>";

/// Context attributes filled from the attempt's own fields, never from its context map.
pub const RESERVED_CONTEXT: &[&str] = &[
    "has_justification",
    "justification",
    "on_behalf_of",
    "resource_count",
];

/// A declared attribute type, as far as evaluation cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AttrType {
    String,
    Long,
    Bool,
    SetOfString,
    Entity(String),
    /// Records, extension types, sets of anything but strings: never filled.
    Other,
}

#[derive(Clone, Debug)]
pub(crate) struct Attr {
    pub name: String,
    pub ty: AttrType,
    pub required: bool,
}

/// What evaluation needs to know about one action.
#[derive(Clone, Debug)]
pub(crate) struct ActionVocab {
    pub uid: EntityUid,
    pub principal_types: BTreeSet<String>,
    pub resource_types: BTreeSet<String>,
    pub context: Vec<Attr>,
    /// The action entity, present only when the action belongs to action groups (then
    /// `action in Action::"group"` needs it in the entity store).
    pub entity: Option<Entity>,
}

/// What evaluation needs to know about one entity type.
#[derive(Clone, Debug)]
pub(crate) struct EntityVocab {
    pub name: EntityTypeName,
    /// Types an entity of this type may be a member of, transitively.
    pub ancestors: BTreeSet<String>,
    pub attrs: Vec<Attr>,
}

/// The merged schema and the facts extracted from it.
#[derive(Debug)]
pub(crate) struct Vocabulary {
    pub schema: Schema,
    pub actions: HashMap<String, ActionVocab>,
    pub entity_types: HashMap<String, EntityVocab>,
    /// Entity types some action accepts as its resource.
    pub resource_types: BTreeSet<String>,
}

/// A schema file parsed on its own, before merging.
pub(crate) struct ParsedFragment {
    pub fragment: SchemaFragment,
    pub json: Value,
}

/// Parses one schema file. The error is Cedar's message and, when it has one, the byte span.
pub(crate) fn parse_fragment(text: &str) -> Result<ParsedFragment, (String, Option<usize>)> {
    let (fragment, _warnings) = SchemaFragment::from_cedarschema_str(text)
        .map_err(|e| (diagnostic_message(&e), first_label_offset(&e)))?;
    if let Some(Some(ns)) = fragment.namespaces().find(Option::is_some) {
        return Err((
            format!(
                "namespace `{ns}`: schema extensions must not use a namespace (the built-in \
                 vocabulary has none, and policies name types unqualified)"
            ),
            None,
        ));
    }
    // A second parse, because `to_json_value` consumes the fragment: the JSON form is the only
    // public view of declared attributes and contexts.
    let json = SchemaFragment::from_cedarschema_str(text)
        .map_err(|e| (diagnostic_message(&e), first_label_offset(&e)))
        .and_then(|(f, _)| f.to_json_value().map_err(|e| (e.to_string(), None)))?;
    Ok(ParsedFragment { fragment, json })
}

/// Merges parsed fragments into a schema and extracts the vocabulary.
pub(crate) fn build(fragments: Vec<ParsedFragment>) -> Result<Vocabulary, MergeError> {
    let mut jsons = Vec::with_capacity(fragments.len());
    let mut frags = Vec::with_capacity(fragments.len());
    for f in fragments {
        jsons.push(f.json);
        frags.push(f.fragment);
    }
    let schema = Schema::from_schema_fragments(frags).map_err(|e| MergeError {
        message: diagnostic_message(&e),
        spans: labels(&e),
    })?;
    let view = JsonView::new(&jsons);
    let action_entities = schema.action_entities().map_err(|e| MergeError {
        message: e.to_string(),
        spans: Vec::new(),
    })?;

    let mut actions = HashMap::new();
    for uid in schema.actions() {
        let name = uid.id().unescaped().to_owned();
        let principal_types = schema
            .principals_for_action(uid)
            .map(|it| it.map(|t| t.to_string()).collect())
            .unwrap_or_default();
        let resource_types: BTreeSet<String> = schema
            .resources_for_action(uid)
            .map(|it| it.map(|t| t.to_string()).collect())
            .unwrap_or_default();
        let entity = action_entities.get(uid).filter(|e| {
            let (_, _, parents) = (*e).clone().into_inner();
            !parents.is_empty()
        });
        actions.insert(
            name.clone(),
            ActionVocab {
                uid: uid.clone(),
                principal_types,
                resource_types,
                context: view.action_context(&name),
                entity: entity.cloned(),
            },
        );
    }

    let mut entity_types = HashMap::new();
    for ty in schema.entity_types() {
        let name = ty.to_string();
        let ancestors = schema
            .ancestors(ty)
            .map(|it| it.map(|t| t.to_string()).collect())
            .unwrap_or_default();
        entity_types.insert(
            name.clone(),
            EntityVocab {
                name: ty.clone(),
                ancestors,
                attrs: view.entity_attrs(&name),
            },
        );
    }
    let resource_types = schema.resources().map(|t| t.to_string()).collect();
    Ok(Vocabulary {
        schema,
        actions,
        entity_types,
        resource_types,
    })
}

/// Why the fragments did not merge, with spans into whichever file the error is about.
#[derive(Debug)]
pub(crate) struct MergeError {
    pub message: String,
    /// (offset, length, text at that span) of each label.
    pub spans: Vec<(usize, usize, Option<String>)>,
}

/// Cedar's message with its help text, on one line.
pub(crate) fn diagnostic_message(e: &(impl miette::Diagnostic + ?Sized)) -> String {
    let mut message = e.to_string();
    if let Some(help) = e.help() {
        message.push_str(" (");
        message.push_str(&help.to_string());
        message.push(')');
    }
    message
}

pub(crate) fn first_label_offset(e: &(impl miette::Diagnostic + ?Sized)) -> Option<usize> {
    e.labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset())
}

/// Label spans, each with the source text it covers when the diagnostic carries its source:
/// that text tells which file a merge error is about.
fn labels(e: &(impl miette::Diagnostic + ?Sized)) -> Vec<(usize, usize, Option<String>)> {
    let source = e.source_code();
    e.labels()
        .map(|labels| {
            labels
                .map(|l| {
                    let text = source.and_then(|s| {
                        s.read_span(l.inner(), 0, 0)
                            .ok()
                            .and_then(|c| std::str::from_utf8(c.data()).ok().map(str::to_owned))
                    });
                    (l.offset(), l.len(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The JSON form of every fragment, for reading declared shapes.
struct JsonView<'a> {
    common: HashMap<&'a str, &'a Value>,
    entities: HashMap<&'a str, &'a Value>,
    actions: HashMap<&'a str, &'a Value>,
}

impl<'a> JsonView<'a> {
    fn new(jsons: &'a [Value]) -> JsonView<'a> {
        let mut view = JsonView {
            common: HashMap::new(),
            entities: HashMap::new(),
            actions: HashMap::new(),
        };
        // Only the empty namespace exists: `parse_fragment` refuses the others.
        for ns in jsons.iter().filter_map(|j| j.get("")) {
            for (map, key) in [
                (&mut view.common, "commonTypes"),
                (&mut view.entities, "entityTypes"),
                (&mut view.actions, "actions"),
            ] {
                if let Some(obj) = ns.get(key).and_then(Value::as_object) {
                    map.extend(obj.iter().map(|(k, v)| (k.as_str(), v)));
                }
            }
        }
        view
    }

    fn action_context(&self, action: &str) -> Vec<Attr> {
        self.actions
            .get(action)
            .and_then(|a| a.pointer("/appliesTo/context"))
            .map(|ctx| self.record_attrs(ctx, 0))
            .unwrap_or_default()
    }

    fn entity_attrs(&self, ty: &str) -> Vec<Attr> {
        self.entities
            .get(ty)
            .and_then(|e| e.get("shape"))
            .map(|shape| self.record_attrs(shape, 0))
            .unwrap_or_default()
    }

    /// The attributes of a record type (resolving a common-type reference).
    fn record_attrs(&self, ty: &Value, depth: usize) -> Vec<Attr> {
        let Some(ty) = self.resolve_common(ty, depth) else {
            return Vec::new();
        };
        let Some(attrs) = ty.get("attributes").and_then(Value::as_object) else {
            return Vec::new();
        };
        let mut out: Vec<Attr> = attrs
            .iter()
            .map(|(name, attr)| Attr {
                name: name.clone(),
                ty: self.attr_type(attr, depth),
                required: attr
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Follows common-type references to the underlying type. `None` on a cycle (Cedar refuses
    /// those before we get here; the depth bound only keeps us safe).
    fn resolve_common<'v>(&'v self, ty: &'v Value, depth: usize) -> Option<&'v Value> {
        if depth > 32 {
            return None;
        }
        let tag = ty.get("type").and_then(Value::as_str)?;
        let name = match tag {
            "EntityOrCommon" => ty.get("name").and_then(Value::as_str)?,
            "String" | "Long" | "Boolean" | "Set" | "Entity" | "Record" | "Extension" => {
                return Some(ty);
            }
            other => other,
        };
        match self.common.get(name) {
            Some(def) => self.resolve_common(def, depth + 1),
            None => Some(ty),
        }
    }

    fn attr_type(&self, ty: &Value, depth: usize) -> AttrType {
        let Some(ty) = self.resolve_common(ty, depth) else {
            return AttrType::Other;
        };
        let tag = ty.get("type").and_then(Value::as_str).unwrap_or_default();
        let name = ty.get("name").and_then(Value::as_str).unwrap_or_default();
        match (tag, name) {
            ("String", _) => AttrType::String,
            ("Long", _) => AttrType::Long,
            ("Boolean", _) => AttrType::Bool,
            ("Set", _) => match ty
                .get("element")
                .map(|e| self.attr_type(e, depth + 1))
                .unwrap_or(AttrType::Other)
            {
                AttrType::String => AttrType::SetOfString,
                _ => AttrType::Other,
            },
            ("Entity", name) => AttrType::Entity(name.to_owned()),
            ("EntityOrCommon", "String" | "__cedar::String") => AttrType::String,
            ("EntityOrCommon", "Long" | "__cedar::Long") => AttrType::Long,
            ("EntityOrCommon", "Bool" | "Boolean" | "__cedar::Bool") => AttrType::Bool,
            ("EntityOrCommon", name) if self.entities.contains_key(name) => {
                AttrType::Entity(name.to_owned())
            }
            _ => AttrType::Other,
        }
    }
}

/// Whether `name` parses as a Cedar entity type name.
pub(crate) fn type_name(name: &str) -> Option<EntityTypeName> {
    EntityTypeName::from_str(name).ok()
}

/// Sorted list form, for messages.
pub(crate) fn list(items: &BTreeSet<String>) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Declared attributes by name, for quick lookup.
#[cfg(test)]
fn by_name(attrs: &[Attr]) -> std::collections::BTreeMap<&str, &Attr> {
    attrs.iter().map(|a| (a.name.as_str(), a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Vocabulary {
        build(vec![parse_fragment(BUILTIN_SCHEMA).unwrap()]).unwrap()
    }

    #[test]
    fn builtin_vocabulary() {
        let v = builtin();
        for a in countersign_core::attempt::BUILTIN_ACTIONS {
            let action = &v.actions[*a];
            assert_eq!(action.principal_types.len(), 2, "{a}");
            assert_eq!(action.resource_types.len(), 7, "{a}");
            assert!(action.entity.is_none());
        }
        assert_eq!(
            v.actions.len(),
            countersign_core::attempt::BUILTIN_ACTIONS.len()
        );
        assert_eq!(
            v.resource_types,
            [
                "Database",
                "Table",
                "McpServer",
                "Tool",
                "Host",
                "Service",
                "Endpoint"
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        );
        let ctx = &v.actions["exec"].context;
        let names: Vec<(&str, &AttrType, bool)> = ctx
            .iter()
            .map(|a| (a.name.as_str(), &a.ty, a.required))
            .collect();
        assert!(names.contains(&("has_justification", &AttrType::Bool, true)));
        assert!(names.contains(&("resource_count", &AttrType::Long, true)));
        assert!(names.contains(&("justification", &AttrType::String, false)));
        assert!(names.contains(&("ticket", &AttrType::String, false)));
        assert!(names.contains(&("on_behalf_of", &AttrType::Entity("User".into()), false)));
        let tool = &v.entity_types["Tool"];
        assert!(tool.ancestors.contains("McpServer"));
        let attrs = by_name(&tool.attrs);
        assert_eq!(attrs["readOnlyHint"].ty, AttrType::Bool);
        assert_eq!(attrs["tags"].ty, AttrType::SetOfString);
        assert_eq!(attrs["classification"].ty, AttrType::String);
        assert!(v.entity_types["Table"].ancestors.contains("Database"));
        assert!(v.entity_types["User"].ancestors.contains("Group"));
    }

    #[test]
    fn namespaced_extensions_are_refused() {
        let Err((msg, _)) = parse_fragment("namespace Pay { entity Account; }") else {
            panic!("namespace accepted");
        };
        assert!(msg.contains("namespace"), "{msg}");
    }
}
