//! Loading a policy set: read `*.cedar` and `*.cedarschema` files, parse, check ids and
//! approval annotations, validate against the merged schema (strict mode), hash the version,
//! and pre-slice the set for fast evaluation.
//!
//! Every problem is located by file, line and column; one problem refuses the whole set, so a
//! reload that fails leaves the previous set in force.
//!
//! # Files
//!
//! The directory is read non-recursively; files are taken in byte order of their names. Only
//! names ending in `.cedar` (policies) or `.cedarschema` (schema extensions) count; names
//! starting with `.` are skipped (editor lock and swap files), as is everything else.
//!
//! # Policy ids
//!
//! Every policy must carry `@id("...")`, unique across all files: decisions, audit events and
//! approval rules name policies by it, and an id derived from file position would change
//! meaning whenever someone inserts a policy above. Ids are 1–128 characters of ASCII letters,
//! digits and `-`, `_`, `.`, `:`, `/`.
//!
//! # Version hash
//!
//! `version` is the lowercase hex SHA-256 over every counted file (schema extensions
//! included), in name order, each encoded as
//! `u64_be(len(name)) ‖ name ‖ u64_be(len(bytes)) ‖ bytes`, where `name` is the bare file name
//! in UTF-8 and `bytes` the file's exact content. The built-in schema is not part of it: it
//! versions with the binary.

use crate::annotations;
use crate::error::{PolicyLoadError, Position, Problem, ProblemKind};
use crate::eval::{Names, Slices};
use crate::schema::{self, BUILTIN_SCHEMA, BUILTIN_SCHEMA_NAME, Vocabulary};
use cedar_policy::{Authorizer, Effect, Policy, PolicyId, PolicySet, ValidationMode, Validator};
use countersign_core::Requirements;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::str::FromStr;

/// Longest accepted `@id`.
pub const MAX_POLICY_ID_LEN: usize = 128;

/// Whether a policy permits or forbids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyEffect {
    Permit,
    Forbid,
}

/// One loaded policy, as an operator would want to see it listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyInfo {
    pub id: String,
    pub file: String,
    /// Where the policy starts (its first annotation).
    pub line: u32,
    pub column: u32,
    pub effect: PolicyEffect,
    /// Every annotation verbatim, including `@id` and ones countersign does not know yet.
    pub annotations: BTreeMap<String, String>,
    /// Parsed `@approval`/`@quorum`/`@grant`/`@timeout`, for permits that need approval.
    pub requirements: Option<Requirements>,
    /// `@audit_payload("withhold")`: the payload text stays out of the audit log.
    pub withholds_payload: bool,
}

/// A validated, hashed and sliced policy set, ready to evaluate. Cheap to share behind an
/// `Arc`; immutable except for an internal cache.
#[derive(Debug)]
pub struct LoadedPolicies {
    pub(crate) version: String,
    pub(crate) files: Vec<String>,
    pub(crate) policies: BTreeMap<String, PolicyInfo>,
    pub(crate) warnings: Vec<Problem>,
    pub(crate) approval_groups: BTreeSet<String>,
    pub(crate) vocab: Vocabulary,
    pub(crate) slices: Slices,
    pub(crate) names: Names,
    pub(crate) authorizer: Authorizer,
    pub(crate) memo: crate::memo::Memo,
}

/// A policy with everything known about it before validation.
struct Parsed {
    policy: Policy,
    info: PolicyInfo,
    /// The file's text, to locate validation errors.
    file_index: usize,
}

struct SourceFile {
    name: String,
    bytes: Vec<u8>,
}

impl LoadedPolicies {
    /// Loads every `*.cedar` and `*.cedarschema` file of `dir`.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<LoadedPolicies, PolicyLoadError> {
        let dir = dir.as_ref();
        let io = |source| PolicyLoadError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut files = Vec::new();
        let mut problems = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let os_name = entry.file_name();
            let Some(name) = os_name.to_str() else {
                let lossy = os_name.to_string_lossy();
                if is_counted(&lossy) {
                    problems.push(Problem::new(
                        ProblemKind::File,
                        &lossy,
                        "file name is not valid UTF-8",
                    ));
                }
                continue;
            };
            if !is_counted(name) {
                continue;
            }
            let path = entry.path();
            // `metadata` follows symlinks: a link to a policy file counts, a directory does not.
            let meta = std::fs::metadata(&path).map_err(|source| PolicyLoadError::Io {
                path: path.clone(),
                source,
            })?;
            if !meta.is_file() {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| PolicyLoadError::Io {
                path: path.clone(),
                source,
            })?;
            files.push(SourceFile {
                name: name.to_owned(),
                bytes,
            });
        }
        Self::build(dir.display().to_string(), files, problems)
    }

    /// Loads policies from in-memory `(file name, content)` pairs, e.g. `include_str!`-embedded
    /// defaults; the same rules as [`LoadedPolicies::load_dir`] apply, names included.
    pub fn from_sources(files: &[(&str, &str)]) -> Result<LoadedPolicies, PolicyLoadError> {
        let files = files
            .iter()
            .filter(|(name, _)| is_counted(name))
            .map(|(name, text)| SourceFile {
                name: (*name).to_owned(),
                bytes: text.as_bytes().to_vec(),
            })
            .collect();
        Self::build("embedded policies".into(), files, Vec::new())
    }

    fn build(
        origin: String,
        mut files: Vec<SourceFile>,
        mut problems: Vec<Problem>,
    ) -> Result<LoadedPolicies, PolicyLoadError> {
        files.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = files.windows(2).find(|w| w[0].name == w[1].name) {
            problems.push(Problem::new(
                ProblemKind::File,
                &w[0].name,
                "the same file name is given twice",
            ));
        }
        if !files.iter().any(|f| f.name.ends_with(".cedar")) && problems.is_empty() {
            return Err(PolicyLoadError::NoPolicies { origin });
        }
        let version = version_hash(&files);
        let file_names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();

        let mut texts: Vec<(&str, &str)> = Vec::new();
        for f in &files {
            match std::str::from_utf8(&f.bytes) {
                Ok(text) => texts.push((&f.name, text)),
                Err(e) => problems.push(
                    Problem::new(ProblemKind::File, &f.name, "file is not valid UTF-8").at(Some(
                        Position::of_offset(
                            &String::from_utf8_lossy(&f.bytes[..e.valid_up_to()]),
                            e.valid_up_to(),
                        ),
                    )),
                ),
            }
        }

        let vocab = load_schema(&texts, &mut problems);
        let parsed = parse_policies(&texts, &mut problems);
        let Some(vocab) = vocab else {
            return Err(PolicyLoadError::Invalid(problems));
        };
        if !problems.is_empty() {
            return Err(PolicyLoadError::Invalid(problems));
        }
        if parsed.is_empty() {
            return Err(PolicyLoadError::NoPolicies { origin });
        }

        let mut set = PolicySet::new();
        for p in &parsed {
            if let Err(e) = set.add(p.policy.clone()) {
                // Unreachable after the duplicate check; kept so a surprise is a refusal.
                problems.push(
                    Problem::new(ProblemKind::DuplicateId, &p.info.file, e.to_string())
                        .policy(&p.info.id),
                );
            }
        }
        let by_id: HashMap<&str, &Parsed> =
            parsed.iter().map(|p| (p.info.id.as_str(), p)).collect();
        let validation =
            Validator::new(vocab.schema.clone()).validate(&set, ValidationMode::Strict);
        let locate = |id: &PolicyId, offset: Option<usize>| -> (String, Option<Position>) {
            match by_id.get(id_str(id)) {
                Some(p) => {
                    let text = texts[p.file_index].1;
                    let pos = offset
                        .map(|o| Position::of_offset(text, o))
                        .or(Some(Position {
                            line: p.info.line,
                            column: p.info.column,
                        }));
                    (p.info.file.clone(), pos)
                }
                None => (String::new(), None),
            }
        };
        for e in validation.validation_errors() {
            let (file, pos) = locate(e.policy_id(), schema::first_label_offset(e));
            let problem = Problem::new(ProblemKind::Validation, &file, policy_message(e))
                .at(pos)
                .policy(e.policy_id().to_string());
            push_collapsed(&mut problems, problem);
        }
        if !problems.is_empty() {
            return Err(PolicyLoadError::Invalid(problems));
        }
        let warnings = validation
            .validation_warnings()
            .fold(Vec::new(), |mut warnings, w| {
                let (file, pos) = locate(w.policy_id(), schema::first_label_offset(w));
                let problem = Problem::new(ProblemKind::Validation, &file, policy_message(w))
                    .at(pos)
                    .policy(w.policy_id().to_string());
                push_collapsed(&mut warnings, problem);
                warnings
            });

        let Some(names) = Names::new() else {
            return Err(PolicyLoadError::Invalid(vec![Problem::new(
                ProblemKind::Schema,
                BUILTIN_SCHEMA_NAME,
                "internal error: built-in type names do not parse",
            )]));
        };
        let slices = Slices::build(&vocab, parsed.iter().map(|p| &p.policy)).map_err(|e| {
            PolicyLoadError::Invalid(vec![Problem::new(
                ProblemKind::Validation,
                "<policy set>",
                format!("internal error while slicing: {e}"),
            )])
        })?;
        let policies: BTreeMap<String, PolicyInfo> = parsed
            .into_iter()
            .map(|p| (p.info.id.clone(), p.info))
            .collect();
        let approval_groups = policies
            .values()
            .filter_map(|p| p.requirements.as_ref())
            .flat_map(|r| {
                // Groups escalated to review too, once their escalation falls due.
                let escalated = r.escalations.iter().flat_map(|e| e.groups.iter().cloned());
                r.eligible_groups().into_iter().chain(escalated)
            })
            .collect();
        Ok(LoadedPolicies {
            version,
            files: file_names,
            policies,
            warnings,
            approval_groups,
            vocab,
            slices,
            names,
            authorizer: Authorizer::new(),
            memo: crate::memo::Memo::default(),
        })
    }

    /// Hex SHA-256 naming this exact set of files (see the module docs for the encoding).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The files the set was loaded from, in load order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// How many policies the set holds.
    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    /// Every policy, ordered by id.
    pub fn policies(&self) -> impl Iterator<Item = &PolicyInfo> {
        self.policies.values()
    }

    pub fn policy(&self, id: &str) -> Option<&PolicyInfo> {
        self.policies.get(id)
    }

    /// The raw annotations of policy `id`, for features that read their own annotations.
    pub fn annotations(&self, id: &str) -> Option<&BTreeMap<String, String>> {
        self.policies.get(id).map(|p| &p.annotations)
    }

    /// Cedar's validation warnings (e.g. a policy that can never match); they do not refuse
    /// the set but `policy check` should show them.
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// Whether any of `policy_ids` asks to keep the payload text out of the audit log.
    pub fn withholds_payload(&self, policy_ids: &[String]) -> bool {
        policy_ids
            .iter()
            .any(|id| self.policy(id).is_some_and(|p| p.withholds_payload))
    }

    /// Every group named in some `@approval`: members of these groups may list requests.
    pub fn groups_named_in_approvals(&self) -> BTreeSet<String> {
        self.approval_groups.clone()
    }

    /// Whether the merged schema declares action `name` and it applies to some principal and
    /// resource type (a bare action group such as `action "payments";` does not).
    pub fn is_known_action(&self, name: &str) -> bool {
        self.vocab
            .actions
            .get(name)
            .is_some_and(|a| !a.principal_types.is_empty() && !a.resource_types.is_empty())
    }

    /// Whether the merged schema lets some action apply to resources of type `name`.
    pub fn is_known_resource_type(&self, name: &str) -> bool {
        self.vocab.resource_types.contains(name)
    }

    /// Every action an attempt may name (see [`LoadedPolicies::is_known_action`]), sorted.
    pub fn actions(&self) -> BTreeSet<String> {
        self.vocab
            .actions
            .keys()
            .filter(|a| self.is_known_action(a))
            .cloned()
            .collect()
    }

    /// Every resource type some action applies to, sorted.
    pub fn resource_types(&self) -> &BTreeSet<String> {
        &self.vocab.resource_types
    }
}

/// The built-in schema plus the operator's `.cedarschema` files, merged. `None` when any of
/// them is broken (the problems say why).
fn load_schema(texts: &[(&str, &str)], problems: &mut Vec<Problem>) -> Option<Vocabulary> {
    let mut fragments = Vec::new();
    let mut sources: Vec<(&str, &str)> = vec![(BUILTIN_SCHEMA_NAME, BUILTIN_SCHEMA)];
    let mut broken = false;
    match schema::parse_fragment(BUILTIN_SCHEMA) {
        Ok(f) => fragments.push(f),
        Err((message, _)) => {
            problems.push(Problem::new(
                ProblemKind::Schema,
                BUILTIN_SCHEMA_NAME,
                message,
            ));
            broken = true;
        }
    }
    for (name, text) in texts.iter().filter(|(n, _)| n.ends_with(".cedarschema")) {
        match schema::parse_fragment(text) {
            Ok(f) => {
                fragments.push(f);
                sources.push((name, text));
            }
            Err((message, offset)) => {
                problems.push(
                    Problem::new(ProblemKind::Schema, name, message)
                        .at(offset.map(|o| Position::of_offset(text, o))),
                );
                broken = true;
            }
        }
    }
    if broken {
        return None;
    }
    match schema::build(fragments) {
        Ok(vocab) => Some(vocab),
        Err(e) => {
            // Merge errors carry spans but not which fragment they are in: the file whose text
            // at that span matches is the one; failing that, name every extension.
            // The built-in schema is never the one to fix, so only extensions are candidates.
            let culprit = e.spans.iter().find_map(|(offset, len, text)| {
                let text = text.as_deref()?;
                let mut hits = sources
                    .iter()
                    .skip(1)
                    .filter(|(_, src)| src.get(*offset..offset.saturating_add(*len)) == Some(text));
                match (hits.next(), hits.next()) {
                    (Some(hit), None) => Some((hit.0, Position::of_offset(hit.1, *offset))),
                    _ => None,
                }
            });
            let problem = match culprit {
                Some((name, pos)) => {
                    Problem::new(ProblemKind::Schema, name, e.message.clone()).at(Some(pos))
                }
                None => {
                    let names: Vec<&str> = sources.iter().skip(1).map(|(n, _)| *n).collect();
                    let file = if names.is_empty() {
                        BUILTIN_SCHEMA_NAME.to_owned()
                    } else {
                        names.join(", ")
                    };
                    Problem::new(ProblemKind::Schema, &file, e.message.clone())
                }
            };
            problems.push(problem);
            None
        }
    }
}

/// Parses every `.cedar` file, assigns `@id`s and reads approval annotations.
fn parse_policies(texts: &[(&str, &str)], problems: &mut Vec<Problem>) -> Vec<Parsed> {
    let mut out: Vec<Parsed> = Vec::new();
    let mut seen: HashMap<String, (String, Position)> = HashMap::new();
    for (file_index, (name, text)) in texts.iter().enumerate() {
        if !name.ends_with(".cedar") {
            continue;
        }
        let set = match PolicySet::from_str(text) {
            Ok(set) => set,
            Err(errors) => {
                for e in errors.iter() {
                    let pos = schema::first_label_offset(e).map(|o| Position::of_offset(text, o));
                    problems.push(
                        Problem::new(ProblemKind::Syntax, name, schema::diagnostic_message(e))
                            .at(pos),
                    );
                }
                continue;
            }
        };
        for t in set.templates() {
            let pos = locate_text(text, &t.to_string(), 0).map(|o| Position::of_offset(text, o));
            problems.push(
                Problem::new(
                    ProblemKind::Template,
                    name,
                    "policy templates (`?principal`, `?resource`) are not supported",
                )
                .at(pos),
            );
        }
        // Cedar names the policies of a file `policy0`, `policy1`, … in source order; sorting by
        // that index restores the order, so each policy's text is found after the previous one.
        let mut policies: Vec<(usize, &Policy)> = set
            .policies()
            .map(|p| {
                let index = id_str(p.id())
                    .strip_prefix("policy")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(usize::MAX);
                (index, p)
            })
            .collect();
        policies.sort_by_key(|(i, _)| *i);
        let mut cursor = 0;
        for (_, policy) in policies {
            let offset = policy
                .to_cedar()
                .and_then(|src: String| locate_text(text, &src, cursor).map(|o| (o, src.len())));
            let pos = match offset {
                Some((o, len)) => {
                    cursor = o + len;
                    Position::of_offset(text, o)
                }
                None => Position { line: 1, column: 1 },
            };
            if let Some(p) = read_policy(name, file_index, pos, policy, &mut seen, problems) {
                out.push(p);
            }
        }
    }
    out
}

/// Cedar's message without its `for policy `x`, ` prefix: problems name the policy already.
fn policy_message(e: &(impl miette::Diagnostic + ?Sized)) -> String {
    let message = schema::diagnostic_message(e);
    match message.strip_prefix("for policy `") {
        Some(rest) => match rest.split_once("`, ") {
            Some((_, tail)) => tail.to_owned(),
            None => message,
        },
        None => message,
    }
}

/// Adds a validation problem, folding it into an earlier one for the same policy and place:
/// Cedar checks each request environment separately and would otherwise repeat the same
/// mistake once per resource type.
fn push_collapsed(problems: &mut Vec<Problem>, problem: Problem) {
    let same = problems.iter_mut().find(|p| {
        p.kind == problem.kind
            && p.policy_id == problem.policy_id
            && p.line == problem.line
            && p.column == problem.column
    });
    match same {
        Some(p) => {
            if !p
                .message
                .ends_with("(similar errors for other request types omitted)")
            {
                p.message
                    .push_str(" (similar errors for other request types omitted)");
            }
        }
        None => problems.push(problem),
    }
}

fn id_str(id: &PolicyId) -> &str {
    id.as_ref()
}

fn locate_text(text: &str, needle: &str, from: usize) -> Option<usize> {
    text.get(from..)?.find(needle).map(|o| o + from)
}

/// Checks one policy's `@id` and annotations.
fn read_policy(
    file: &str,
    file_index: usize,
    pos: Position,
    policy: &Policy,
    seen: &mut HashMap<String, (String, Position)>,
    problems: &mut Vec<Problem>,
) -> Option<Parsed> {
    let annotations: BTreeMap<String, String> = policy
        .annotations()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let Some(id) = annotations.get("id").cloned() else {
        problems.push(
            Problem::new(
                ProblemKind::MissingId,
                file,
                "policy has no @id(\"...\") annotation; every policy needs a unique id",
            )
            .at(Some(pos)),
        );
        return None;
    };
    if !valid_id(&id) {
        problems.push(
            Problem::new(
                ProblemKind::MissingId,
                file,
                format!(
                    "@id(\"{id}\"): use 1 to {MAX_POLICY_ID_LEN} ASCII letters, digits, `-`, `_`, `.`, `:` or `/`"
                ),
            )
            .at(Some(pos)),
        );
        return None;
    }
    if let Some((first_file, first_pos)) = seen.get(&id) {
        problems.push(
            Problem::new(
                ProblemKind::DuplicateId,
                file,
                format!("@id(\"{id}\") is already used at {first_file}:{first_pos}"),
            )
            .at(Some(pos))
            .policy(&id),
        );
        return None;
    }
    seen.insert(id.clone(), (file.to_owned(), pos));
    let effect = match policy.effect() {
        Effect::Permit => PolicyEffect::Permit,
        Effect::Forbid => PolicyEffect::Forbid,
    };
    let checked = annotations::requirements(&id, effect == PolicyEffect::Forbid, &annotations)
        .and_then(|r| annotations::withholds_payload(&annotations).map(|w| (r, w)));
    let (requirements, withholds_payload) = match checked {
        Ok(r) => r,
        Err(message) => {
            problems.push(
                Problem::new(ProblemKind::Annotation, file, message)
                    .at(Some(pos))
                    .policy(&id),
            );
            return None;
        }
    };
    Some(Parsed {
        policy: policy.new_id(PolicyId::new(&id)),
        info: PolicyInfo {
            id,
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            effect,
            annotations,
            requirements,
            withholds_payload,
        },
        file_index,
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_POLICY_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
}

fn is_counted(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".cedar") || name.ends_with(".cedarschema"))
}

fn version_hash(files: &[SourceFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update((f.name.len() as u64).to_be_bytes());
        h.update(f.name.as_bytes());
        h.update((f.bytes.len() as u64).to_be_bytes());
        h.update(&f.bytes);
    }
    hex::encode(h.finalize())
}
