use cedar_policy::*;
use std::str::FromStr;
fn main() {
    let src = include_str!("../src/builtin.cedarschema");
    let (frag, warns) = SchemaFragment::from_cedarschema_str(src).unwrap();
    for w in warns { println!("warn {w}"); }
    let ext = r#"entity Account in [Group] { region?: String };
    action "payments" ;
    action "payments.refund" in ["payments"] appliesTo { principal: [User, Agent], resource: [Account], context: Context };"#;
    let (frag2, _) = SchemaFragment::from_cedarschema_str(ext).unwrap();
    println!("{}", serde_json::to_string_pretty(&frag2.clone().to_json_value().unwrap()).unwrap());
    let j = frag.clone().to_json_value().unwrap();
    println!("{}", serde_json::to_string_pretty(&j).unwrap());
    let schema = Schema::from_schema_fragments([frag, frag2]).unwrap();
    for e in schema.request_envs() { let _ = e; }
    println!("envs {}", schema.request_envs().count());
    let ae = schema.action_entities().unwrap();
    for e in ae.iter() { println!("{}", e.uid()); }
    let bad = "entity Foo { x: Strin };\naction \"a\" appliesTo { principal: [User], resource: [Nope] };";
    match SchemaFragment::from_cedarschema_str(bad) {
        Ok((f, _)) => match Schema::from_schema_fragments([SchemaFragment::from_cedarschema_str(src).unwrap().0, f]) {
            Ok(_) => println!("ok??"),
            Err(e) => { use miette::Diagnostic; println!("merge err: {e} / {:?}", e.labels().map(|l| l.collect::<Vec<_>>())); }
        },
        Err(e) => println!("parse err {e}"),
    }
    let _ = EntityUid::from_str("User::\"a\"");
}
