#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatementKind {
    Read,
    Write,
    Ddl,
    Destructive,
    Export,
    Privilege,
    Unknown,
}
impl StatementKind {
    pub fn action(self) -> &'static str {
        match self {
            StatementKind::Read => "db.read",
            StatementKind::Write => "db.write",
            StatementKind::Ddl => "db.ddl",
            StatementKind::Destructive => "db.destructive",
            StatementKind::Export => "db.export",
            StatementKind::Privilege => "db.privilege",
            StatementKind::Unknown => "db.unknown",
        }
    }
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    pub kind: StatementKind,
    pub tables: Vec<String>,
    pub note: Option<String>,
    pub statements: usize,
}
pub fn classify(sql: &str) -> Classification {
    let k = if sql.to_lowercase().contains("drop") {
        StatementKind::Destructive
    } else {
        StatementKind::Read
    };
    Classification {
        kind: k,
        tables: vec![],
        note: None,
        statements: 1,
    }
}
