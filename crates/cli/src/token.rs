//! `countersign token`: new tokens and the hashes a configuration stores instead of them.

use crate::config::PrincipalSection;
use anyhow::{Context, Result, bail};
use countersign_gate_pg::ScramVerifier;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::io::BufRead;

/// A fresh random token: a prefix naming the kind, then 32 random bytes in hex.
pub fn new_token(kind: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("cs_{kind}_{}", hex::encode(bytes))
}

/// The `[[principals]]` section for a principal with `token`.
fn section(kind: &str, id: &str, groups: Vec<String>, token: &str) -> PrincipalSection {
    PrincipalSection {
        kind: kind.to_owned(),
        id: id.to_owned(),
        groups,
        token_sha256: hex::encode(Sha256::digest(token.as_bytes())),
        pg_scram_sha256: Some(ScramVerifier::generate(token).to_string()),
    }
}

/// `token new`: prints a new token and the section that admits it.
pub fn new(kind: &str, id: &str, groups: Vec<String>) -> Result<()> {
    let token = new_token(kind);
    let section = section(kind, id, groups, &token);
    section.to_configured()?;
    let block = toml::to_string(&section).context("cannot print the section")?;
    eprintln!("token (give it to the principal; it is not stored anywhere):");
    println!("{token}");
    eprintln!("\nadd to the configuration:");
    println!("\n[[principals]]\n{block}");
    Ok(())
}

/// `token hash`: reads a token on standard input, prints what the configuration stores.
pub fn hash() -> Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the token from standard input")?;
    let token = line.trim_end_matches(['\r', '\n']);
    if token.is_empty() {
        bail!("no token on standard input");
    }
    println!(
        "token_sha256 = \"{}\"",
        hex::encode(Sha256::digest(token.as_bytes()))
    );
    println!("pg_scram_sha256 = \"{}\"", ScramVerifier::generate(token));
    Ok(())
}
