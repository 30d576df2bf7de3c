//! The classification corpus: statements with the action kind and tables each must get, covering
//! every classification rule and the usual ways of hiding a statement (comments, case, quoting,
//! dollar quoting, several statements in one text, CTEs, subqueries, defaults, lateral joins,
//! prepared statements, EXPLAIN ANALYZE), each checked both directly and through the shape cache.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use countersign_gate_pg::classify::{StatementKind, StatementKind::*, classify};
use countersign_gate_pg::shape::ShapeCache;

/// (name, statement text, expected kind, expected tables).
type Case = (
    &'static str,
    &'static str,
    StatementKind,
    &'static [&'static str],
);

#[rustfmt::skip]
const CORPUS: &[Case] = &[
    // db.read
    ("pgbench -S", "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;", Read, &["pgbench_accounts"]),
    ("select constant", "SELECT 1", Read, &[]),
    ("select join", "SELECT a.id, b.x FROM a JOIN b USING (id) LEFT JOIN c ON c.id = a.id", Read, &["a", "b", "c"]),
    ("values", "VALUES (1, 'a'), (2, 'b')", Read, &[]),
    ("table statement", "TABLE accounts", Read, &["accounts"]),
    ("table only qualified", "TABLE ONLY public.accounts", Read, &["public.accounts"]),
    ("show", "SHOW work_mem", Read, &[]),
    ("show all", "SHOW ALL", Read, &[]),
    ("explain select", "EXPLAIN SELECT * FROM t", Read, &["t"]),
    ("explain delete plans only", "EXPLAIN DELETE FROM t", Read, &["t"]),
    ("explain analyze off", "EXPLAIN (ANALYZE off) DELETE FROM t", Read, &["t"]),
    ("explain of a file read plans only", "EXPLAIN SELECT pg_read_file('/etc/passwd')", Read, &[]),
    ("begin", "BEGIN", Read, &[]),
    ("begin isolation", "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", Read, &[]),
    ("start transaction", "START TRANSACTION", Read, &[]),
    ("commit", "COMMIT", Read, &[]),
    ("rollback", "ROLLBACK", Read, &[]),
    ("abort", "ABORT", Read, &[]),
    ("end", "END", Read, &[]),
    ("savepoint", "SAVEPOINT s1", Read, &[]),
    ("release savepoint", "RELEASE SAVEPOINT s1", Read, &[]),
    ("rollback to savepoint", "ROLLBACK TO SAVEPOINT s1", Read, &[]),
    ("prepare transaction", "PREPARE TRANSACTION 'tx1'", Read, &[]),
    ("set search_path", "SET search_path TO app, public", Read, &[]),
    ("set local timeout", "SET LOCAL statement_timeout = '5s'", Read, &[]),
    ("set time zone", "SET TIME ZONE 'UTC'", Read, &[]),
    ("reset setting", "RESET work_mem", Read, &[]),
    ("reset all", "RESET ALL", Read, &[]),
    ("set transaction", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", Read, &[]),
    ("discard all", "DISCARD ALL", Read, &[]),
    ("deallocate", "DEALLOCATE p1", Read, &[]),
    ("deallocate all", "DEALLOCATE ALL", Read, &[]),
    ("listen", "LISTEN jobs", Read, &[]),
    ("unlisten all", "UNLISTEN *", Read, &[]),
    ("declare cursor", "DECLARE c CURSOR FOR SELECT * FROM accounts", Read, &["accounts"]),
    ("fetch", "FETCH 10 FROM c", Read, &[]),
    ("move", "MOVE NEXT IN c", Read, &[]),
    ("close", "CLOSE c", Read, &[]),
    ("aggregates and niladic functions", "SELECT count(*), max(a), now(), current_user FROM t", Read, &["t"]),
    ("read-only built-ins", "SELECT lower(name), coalesce(x, 0), to_char(now(), 'YYYY') FROM t", Read, &["t"]),
    ("built-in in pg_catalog", "SELECT pg_catalog.lower('X')", Read, &[]),
    ("cte", "WITH recent AS (SELECT * FROM orders WHERE created > now() - interval '1 day') SELECT * FROM recent", Read, &["orders"]),
    ("recursive cte", "WITH RECURSIVE tree AS (SELECT id FROM nodes WHERE parent IS NULL UNION ALL SELECT n.id FROM nodes n JOIN tree ON n.parent = tree.id) SELECT * FROM tree", Read, &["nodes"]),
    ("cte shadows a table", "WITH accounts AS (SELECT 1 AS id) SELECT * FROM accounts", Read, &[]),
    ("cte sees only earlier ctes", "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b", Read, &["b"]),
    ("cte body reads the table of its name", "WITH t AS (SELECT * FROM t) SELECT * FROM t", Read, &["t"]),
    ("quoted qualified name", "SELECT * FROM \"public\".\"Accounts\"", Read, &["public.Accounts"]),
    ("quote inside quoted name", "SELECT * FROM \"Weird\"\"Name\"", Read, &["Weird\"Name"]),
    ("unquoted names fold", "SELECT * FROM Public.ACCOUNTS", Read, &["public.accounts"]),
    ("comment only", "-- nothing here", Read, &[]),
    ("empty", "", Read, &[]),
    ("semicolons only", " ; ; ", Read, &[]),
    ("statement in a comment", "/* DROP TABLE secrets; */ SELECT 1", Read, &[]),
    ("statement in a string", "SELECT 'DROP TABLE t'", Read, &[]),
    ("statement in dollar quotes", "SELECT $$DROP TABLE t$$", Read, &[]),
    ("statement in tagged dollar quotes", "SELECT $x$ ; DROP TABLE t; $x$", Read, &[]),
    ("dollar quote with a different inner tag", "SELECT $a$ $b$; DROP TABLE t; $b$ $a$", Read, &[]),
    ("doubled quote keeps the string open", "SELECT 'a''; DROP TABLE t; --'", Read, &[]),
    ("escaped quote in E string", r"SELECT E'\'; DROP TABLE t; --'", Read, &[]),
    ("statement in a quoted identifier", "SELECT \"col; DROP TABLE t\" FROM t", Read, &["t"]),
    ("nested comment hides a statement", "SELECT 1 /* outer /* inner */ ; DROP TABLE t */", Read, &[]),
    ("string continued across a newline", "SELECT a FROM t WHERE b = 'x'\n  'y'", Read, &["t"]),
    ("string continued across a comment line", "SELECT a FROM t WHERE b = 'x' -- more\n'y'", Read, &["t"]),
    ("set-returning function", "SELECT * FROM generate_series(1, 10)", Read, &[]),
    ("lateral unnest", "SELECT * FROM t, LATERAL unnest(t.tags) AS tag", Read, &["t"]),
    ("unicode string", r"SELECT U&'\0041'", Read, &[]),
    ("numbers", "SELECT 0x1F, 1_000, .5, 1.5e10, -2", Read, &[]),
    ("parameter", "SELECT * FROM t WHERE id = $1", Read, &["t"]),
    ("union", "SELECT a FROM t UNION SELECT a FROM u", Read, &["t", "u"]),
    ("subquery", "SELECT * FROM t1 WHERE id IN (SELECT id FROM t2)", Read, &["t1", "t2"]),
    ("prepared select", "PREPARE q AS SELECT * FROM t WHERE id = $1", Read, &["t"]),
    ("json functions", "SELECT jsonb_build_object('a', a), a->>'b' FROM t", Read, &["t"]),
    // db.write
    ("pgbench update", "UPDATE pgbench_accounts SET abalance = abalance + -4077 WHERE aid = 48213;", Write, &["pgbench_accounts"]),
    ("pgbench insert", "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -4077, CURRENT_TIMESTAMP);", Write, &["pgbench_history"]),
    ("insert on conflict", "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING", Write, &["t"]),
    ("insert select", "INSERT INTO t SELECT * FROM u", Write, &["t", "u"]),
    ("delete with where", "DELETE FROM t WHERE id = 5", Write, &["t"]),
    ("delete using", "DELETE FROM t USING u WHERE t.id = u.id", Write, &["t", "u"]),
    ("update from", "UPDATE t SET a = 1 FROM u WHERE t.id = u.id", Write, &["t", "u"]),
    ("merge", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a WHEN NOT MATCHED THEN INSERT (id, a) VALUES (s.id, s.a)", Write, &["s", "t"]),
    ("select for update", "SELECT * FROM t WHERE id = 1 FOR UPDATE", Write, &["t"]),
    ("select for share", "SELECT * FROM t FOR SHARE SKIP LOCKED", Write, &["t"]),
    ("for update in a subquery", "SELECT * FROM (SELECT * FROM t FOR UPDATE) s", Write, &["t"]),
    ("data-modifying cte", "WITH moved AS (DELETE FROM queue WHERE id = 1 RETURNING *) SELECT * FROM moved", Write, &["queue"]),
    ("cte update feeding an insert", "WITH x AS (UPDATE t SET a = 1 WHERE id = 2 RETURNING *) INSERT INTO log SELECT * FROM x", Write, &["log", "t"]),
    ("copy from stdin", "COPY t FROM STDIN", Write, &["t"]),
    ("copy columns from stdin", "COPY t (a, b) FROM STDIN WITH (FORMAT csv)", Write, &["t"]),
    ("lock", "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", Write, &["t"]),
    ("notify", "NOTIFY jobs, 'payload'", Write, &[]),
    ("nextval", "SELECT nextval('orders_id_seq')", Write, &[]),
    ("setval", "SELECT setval('s', 10)", Write, &[]),
    ("lo_create", "SELECT lo_create(0)", Write, &[]),
    ("lo_unlink", "SELECT lo_unlink(1234)", Write, &[]),
    ("lowrite", "SELECT lowrite(0, 'x')", Write, &[]),
    ("unknown function", "SELECT my_func(1)", Write, &[]),
    ("built-in name in another schema", "SELECT evil.lower('x')", Write, &[]),
    ("quoted built-in name in capitals", "SELECT \"LOWER\"('x')", Write, &[]),
    ("pg_notify", "SELECT pg_notify('c', 'x')", Write, &[]),
    ("function with side effects in a subquery", "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE audit_write(id))", Write, &["t", "u"]),
    ("nextval in values", "INSERT INTO t (a) VALUES (nextval('s'))", Write, &["t"]),
    ("commit prepared", "COMMIT PREPARED 'tx1'", Write, &[]),
    ("prepared insert", "PREPARE ins AS INSERT INTO t VALUES ($1)", Write, &["t"]),
    ("cursor for update", "DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", Write, &["t"]),
    ("mixed case delete with where", "dElEtE FrOm t WhErE id = 1", Write, &["t"]),
    // db.ddl
    ("create table", "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL DEFAULT current_user)", Ddl, &["accounts"]),
    ("create temp table", "CREATE TEMP TABLE scratch (a int)", Ddl, &["scratch"]),
    ("create table as", "CREATE TABLE t2 AS SELECT * FROM t", Ddl, &["t", "t2"]),
    ("select into", "SELECT * INTO t2 FROM t", Ddl, &["t", "t2"]),
    ("create index", "CREATE INDEX CONCURRENTLY idx ON t (lower(email))", Ddl, &["t"]),
    ("create view", "CREATE VIEW v AS SELECT a FROM t", Ddl, &["t", "v"]),
    ("create materialized view", "CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM t", Ddl, &["mv", "t"]),
    ("create schema", "CREATE SCHEMA app", Ddl, &[]),
    ("create sequence", "CREATE SEQUENCE s START 100", Ddl, &["s"]),
    ("create function", "CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql AS $$ SELECT a + b $$", Ddl, &[]),
    ("create type", "CREATE TYPE mood AS ENUM ('sad', 'ok')", Ddl, &[]),
    ("create extension", "CREATE EXTENSION IF NOT EXISTS pgcrypto", Ddl, &[]),
    ("create trigger", "CREATE TRIGGER audit AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION audit_fn()", Ddl, &["t"]),
    ("add column", "ALTER TABLE t ADD COLUMN c text", Ddl, &["t"]),
    ("rename column", "ALTER TABLE t RENAME COLUMN a TO b", Ddl, &["t"]),
    ("alter column type", "ALTER TABLE t ALTER COLUMN c TYPE bigint", Ddl, &["t"]),
    ("alter index", "ALTER INDEX idx RENAME TO idx2", Ddl, &["idx"]),
    ("alter sequence", "ALTER SEQUENCE s RESTART WITH 1", Ddl, &["s"]),
    ("alter view", "ALTER VIEW v RENAME TO w", Ddl, &["v"]),
    ("comment on table", "COMMENT ON TABLE t IS 'accounts'", Ddl, &["t"]),
    ("comment on column", "COMMENT ON COLUMN t.c IS 'x'", Ddl, &["t"]),
    ("vacuum", "VACUUM t", Ddl, &["t"]),
    ("vacuum with options and two tables", "VACUUM (VERBOSE, ANALYZE) t1, t2", Ddl, &["t1", "t2"]),
    ("analyze", "ANALYZE t", Ddl, &["t"]),
    ("cluster", "CLUSTER t USING idx", Ddl, &["t"]),
    ("reindex", "REINDEX TABLE CONCURRENTLY t", Ddl, &["t"]),
    ("refresh materialized view", "REFRESH MATERIALIZED VIEW CONCURRENTLY mv", Ddl, &["mv"]),
    ("checkpoint", "CHECKPOINT", Ddl, &[]),
    ("create domain", "CREATE DOMAIN pos AS int CHECK (VALUE > 0)", Ddl, &[]),
    ("alter extension", "ALTER EXTENSION pgcrypto UPDATE", Ddl, &[]),
    ("create database", "CREATE DATABASE app", Ddl, &[]),
    // db.destructive
    ("drop table", "DROP TABLE t", Destructive, &["t"]),
    ("drop tables", "DROP TABLE IF EXISTS a, public.b CASCADE", Destructive, &["a", "public.b"]),
    ("drop view", "DROP VIEW v", Destructive, &["v"]),
    ("drop index", "DROP INDEX idx", Destructive, &["idx"]),
    ("drop schema", "DROP SCHEMA app CASCADE", Destructive, &[]),
    ("drop function", "DROP FUNCTION f(int)", Destructive, &[]),
    ("drop database", "DROP DATABASE app", Destructive, &[]),
    ("drop extension", "DROP EXTENSION pgcrypto", Destructive, &[]),
    ("drop trigger", "DROP TRIGGER tr ON t", Destructive, &["t"]),
    ("truncate", "TRUNCATE t", Destructive, &["t"]),
    ("truncate two", "TRUNCATE TABLE a, b RESTART IDENTITY", Destructive, &["a", "b"]),
    ("delete without where", "DELETE FROM t", Destructive, &["t"]),
    ("update without where", "UPDATE t SET a = 1", Destructive, &["t"]),
    ("where 1=1", "DELETE FROM t WHERE 1=1", Destructive, &["t"]),
    ("where true", "DELETE FROM t WHERE true", Destructive, &["t"]),
    ("where 'a'='a'", "UPDATE t SET a = 0 WHERE 'a' = 'a'", Destructive, &["t"]),
    ("where not false", "DELETE FROM t WHERE NOT false", Destructive, &["t"]),
    ("where of constants joined by or", "DELETE FROM t WHERE 1 = 1 OR 2 = 3", Destructive, &["t"]),
    ("where exists of a constant query", "DELETE FROM t WHERE EXISTS (SELECT 1)", Destructive, &["t"]),
    ("drop column", "ALTER TABLE t DROP COLUMN c", Destructive, &["t"]),
    ("drop constraint", "ALTER TABLE t DROP CONSTRAINT t_pkey", Destructive, &["t"]),
    ("select then drop", "SELECT 1; DROP TABLE t", Destructive, &["t"]),
    ("select then drop then comment", "SELECT 1;DROP TABLE t;--", Destructive, &["t"]),
    ("cte delete without where", "WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone", Destructive, &["t"]),
    ("explain analyze delete", "EXPLAIN ANALYZE DELETE FROM t", Destructive, &["t"]),
    ("explain analyze option update", "EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1", Destructive, &["t"]),
    ("explain analyze with a number", "EXPLAIN (ANALYZE 0) DELETE FROM t", Destructive, &["t"]),
    ("prepared delete", "PREPARE p AS DELETE FROM t", Destructive, &["t"]),
    ("backslash does not escape in a plain string", r"SELECT 'abc\'; DROP TABLE t; --'", Destructive, &["t"]),
    ("escaped backslash ends an E string", r"SELECT E'abc\\'; DROP TABLE t; --'", Destructive, &["t"]),
    ("national string with backslash", r"SELECT N'abc\'; DROP TABLE t; --'", Destructive, &["t"]),
    ("dollar quote closed early", "SELECT $a$x$a$; DROP TABLE t; --", Destructive, &["t"]),
    ("line comment ends at the newline", "SELECT 1 -- harmless\n; DROP TABLE t", Destructive, &["t"]),
    ("comment between keywords", "SELECT 1 /* c */; DROP/**/TABLE t", Destructive, &["t"]),
    ("comment closes before the statement", "SELECT 1 /* /* nested */ */ ; DROP TABLE t", Destructive, &["t"]),
    ("mixed case drop", "sElEcT 1; dRoP tAbLe T", Destructive, &["t"]),
    ("drop rule", "DROP RULE r ON t", Destructive, &[]),
    ("drop server", "DROP SERVER s", Destructive, &[]),
    ("delete inside a transaction", "BEGIN; DELETE FROM t; COMMIT;", Destructive, &["t"]),
    ("continued string then drop", "SELECT 'a'\n'b'; DROP TABLE t", Destructive, &["t"]),
    // db.export
    ("copy to stdout", "COPY t TO STDOUT", Export, &["t"]),
    ("copy query to stdout", "COPY (SELECT * FROM t) TO STDOUT WITH CSV HEADER", Export, &["t"]),
    ("copy to server file", "COPY t TO '/tmp/t.csv'", Export, &["t"]),
    ("lowercase copy", "copy public.accounts (id, owner) to stdout", Export, &["public.accounts"]),
    ("copy after select", "SELECT 1; COPY t TO STDOUT", Export, &["t"]),
    // db.privilege
    ("grant on table", "GRANT SELECT ON t TO bob", Privilege, &["t"]),
    ("grant all on qualified table", "GRANT ALL PRIVILEGES ON TABLE public.accounts TO app", Privilege, &["public.accounts"]),
    ("revoke", "REVOKE INSERT ON t FROM bob", Privilege, &["t"]),
    ("grant role", "GRANT admin TO bob", Privilege, &[]),
    ("revoke role", "REVOKE admin FROM bob", Privilege, &[]),
    ("create role", "CREATE ROLE app LOGIN PASSWORD 'x'", Privilege, &[]),
    ("create superuser", "CREATE USER u WITH SUPERUSER", Privilege, &[]),
    ("alter role", "ALTER ROLE app SUPERUSER", Privilege, &[]),
    ("alter user password", "ALTER USER u WITH PASSWORD 'y'", Privilege, &[]),
    ("drop role", "DROP ROLE app", Privilege, &[]),
    ("drop user", "DROP USER u", Privilege, &[]),
    ("create group", "CREATE GROUP g", Privilege, &[]),
    ("alter group", "ALTER GROUP g ADD USER u", Privilege, &[]),
    ("drop group", "DROP GROUP g", Privilege, &[]),
    ("set role", "SET ROLE admin", Privilege, &[]),
    ("set local role", "SET LOCAL ROLE admin", Privilege, &[]),
    ("set role as a setting", "SET role TO admin", Privilege, &[]),
    ("reset role", "RESET ROLE", Privilege, &[]),
    ("set session authorization", "SET SESSION AUTHORIZATION postgres", Privilege, &[]),
    ("reset session authorization", "RESET SESSION AUTHORIZATION", Privilege, &[]),
    ("alter system", "ALTER SYSTEM SET wal_level = logical", Privilege, &[]),
    ("alter default privileges", "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob", Privilege, &[]),
    ("owner of table", "ALTER TABLE t OWNER TO bob", Privilege, &["t"]),
    ("owner of schema", "ALTER SCHEMA app OWNER TO bob", Privilege, &[]),
    ("owner of sequence", "ALTER SEQUENCE s OWNER TO bob", Privilege, &["s"]),
    ("owner of function", "ALTER FUNCTION f() OWNER TO bob", Privilege, &[]),
    ("reassign owned", "REASSIGN OWNED BY a TO b", Privilege, &[]),
    ("drop owned", "DROP OWNED BY a", Privilege, &[]),
    ("security label", "SECURITY LABEL ON TABLE t IS 'secret'", Privilege, &[]),
    ("session_replication_role", "SET session_replication_role = replica", Privilege, &[]),
    ("session_replication_role quoted value", "SET session_replication_role TO 'replica'", Privilege, &[]),
    ("security definer function", "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'select 1'", Privilege, &[]),
    ("alter function security definer", "ALTER FUNCTION f() SECURITY DEFINER", Privilege, &[]),
    ("set_config", "SELECT set_config('role', 'admin', false)", Privilege, &[]),
    ("set_config qualified", "SELECT pg_catalog.set_config('search_path', '', false)", Privilege, &[]),
    ("terminate backends", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity", Privilege, &["pg_stat_activity"]),
    ("terminate in capitals", "SELECT PG_TERMINATE_BACKEND(1)", Privilege, &[]),
    ("cancel backend", "SELECT pg_cancel_backend(42)", Privilege, &[]),
    ("reload conf", "SELECT pg_reload_conf()", Privilege, &[]),
    ("rotate logfile", "SELECT pg_rotate_logfile()", Privilege, &[]),
    ("switch wal", "SELECT pg_switch_wal()", Privilege, &[]),
    ("promote", "SELECT pg_promote()", Privilege, &[]),
    ("create replication slot", "SELECT pg_create_physical_replication_slot('s')", Privilege, &[]),
    ("logical slot changes", "SELECT * FROM pg_logical_slot_get_changes('s', NULL, NULL)", Privilege, &[]),
    ("drop replication slot", "SELECT pg_drop_replication_slot('s')", Privilege, &[]),
    ("row-level security policy", "CREATE POLICY p ON t USING (owner = current_user)", Privilege, &["t"]),
    ("disable row-level security", "ALTER TABLE t DISABLE ROW LEVEL SECURITY", Privilege, &["t"]),
    // db.unknown
    ("pg_read_file", "SELECT pg_read_file('/etc/passwd')", Unknown, &[]),
    ("pg_read_file in pg_catalog", "SELECT pg_catalog.pg_read_file('/etc/passwd')", Unknown, &[]),
    ("pg_read_file quoted", "SELECT \"pg_read_file\"('/etc/passwd')", Unknown, &[]),
    ("pg_read_file in capitals", "SELECT PG_READ_FILE('/etc/passwd')", Unknown, &[]),
    ("pg_read_binary_file mixed case", "SELECT Pg_Read_Binary_File('x')", Unknown, &[]),
    ("pg_ls_dir in from", "SELECT * FROM pg_ls_dir('.')", Unknown, &[]),
    ("pg_ls_waldir", "SELECT pg_ls_waldir()", Unknown, &[]),
    ("pg_stat_file", "SELECT pg_stat_file('postgresql.conf')", Unknown, &[]),
    ("lo_import", "SELECT lo_import('/etc/passwd')", Unknown, &[]),
    ("lo_export", "SELECT lo_export(1, '/tmp/x')", Unknown, &[]),
    ("dblink", "SELECT * FROM dblink('host=evil', 'select 1') AS r(a int)", Unknown, &[]),
    ("dblink_exec", "SELECT dblink_exec('x', 'DROP TABLE t')", Unknown, &[]),
    ("pg_file_write", "SELECT pg_file_write('x', 'y', false)", Unknown, &[]),
    ("pg_logdir_ls", "SELECT pg_logdir_ls()", Unknown, &[]),
    ("query_to_xml runs text", "SELECT query_to_xml('select 1', true, false, '')", Unknown, &[]),
    ("file read in a subquery", "SELECT * FROM t WHERE id IN (SELECT length(pg_read_file('x')))", Unknown, &["t"]),
    ("file read in a cte", "WITH f AS (SELECT pg_read_file('x') AS c) SELECT * FROM f", Unknown, &[]),
    ("file read in a default", "CREATE TABLE t (c text DEFAULT pg_read_file('x'))", Unknown, &["t"]),
    ("file read in values", "INSERT INTO t VALUES (pg_read_file('x'))", Unknown, &["t"]),
    ("file read in returning", "UPDATE t SET a = 1 WHERE id = 1 RETURNING pg_read_file('x')", Unknown, &["t"]),
    ("directory listing in a lateral join", "SELECT * FROM t, LATERAL pg_ls_dir(t.path) AS f", Unknown, &["t"]),
    ("file read in order by", "SELECT a FROM t ORDER BY (SELECT pg_read_file('x'))", Unknown, &["t"]),
    ("file read in a view", "CREATE VIEW v AS SELECT pg_read_file('x')", Unknown, &["v"]),
    ("file read by attribute notation", "SELECT t.pg_read_file FROM t", Unknown, &["t"]),
    ("file read under explain analyze", "EXPLAIN ANALYZE SELECT pg_read_file('x')", Unknown, &[]),
    ("file read in a prepared statement", "PREPARE p AS SELECT pg_read_file($1)", Unknown, &[]),
    ("do block", "DO $$ BEGIN DELETE FROM t; END $$", Unknown, &[]),
    ("call", "CALL refresh_all()", Unknown, &[]),
    ("execute", "EXECUTE p(1)", Unknown, &[]),
    ("explain analyze execute", "EXPLAIN ANALYZE EXECUTE p(1)", Unknown, &[]),
    ("copy from server file", "COPY t FROM '/etc/passwd'", Unknown, &["t"]),
    ("copy from program", "COPY t FROM PROGRAM 'curl evil'", Unknown, &["t"]),
    ("copy to program", "COPY t TO PROGRAM 'sh -c id'", Unknown, &["t"]),
    ("copy query to program", "COPY (SELECT 1) TO PROGRAM 'x'", Unknown, &[]),
    ("load", "LOAD 'auto_explain'", Unknown, &[]),
    ("create server", "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", Unknown, &[]),
    ("alter server", "ALTER SERVER s OPTIONS (SET host 'evil')", Unknown, &[]),
    ("user mapping", "CREATE USER MAPPING FOR bob SERVER s", Unknown, &[]),
    ("foreign data wrapper", "CREATE FOREIGN DATA WRAPPER w", Unknown, &[]),
    ("import foreign schema", "IMPORT FOREIGN SCHEMA public FROM SERVER s INTO local", Unknown, &[]),
    ("subscription", "CREATE SUBSCRIPTION sub CONNECTION 'host=x' PUBLICATION p", Unknown, &[]),
    ("standard_conforming_strings", "SET standard_conforming_strings = off", Unknown, &[]),
    ("backslash_quote", "SET backslash_quote = on", Unknown, &[]),
    ("escape_string_warning", "SET escape_string_warning TO off", Unknown, &[]),
    ("client_encoding", "SET client_encoding = 'SJIS'", Unknown, &[]),
    ("set names", "SET NAMES 'SJIS'", Unknown, &[]),
    ("reset standard_conforming_strings", "RESET standard_conforming_strings", Unknown, &[]),
    ("quoted setting name", "SET \"standard_conforming_strings\" TO off", Unknown, &[]),
    ("parse error", "SELEC 1", Unknown, &[]),
    ("parser stopping at END", "SELECT 1 END", Unknown, &[]),
    ("unicode-escaped function name", r#"SELECT U&"pg_read_fil\0065"('x')"#, Unknown, &[]),
    ("unicode-escaped table name", "SELECT * FROM U&\"t\"", Unknown, &[]),
    ("operator running into a comment", "SELECT 1 |-- comment\n; DROP TABLE t", Unknown, &[]),
    ("bit string does not double quotes", "SELECT B'01''; DROP TABLE t; --'", Unknown, &[]),
    ("hex string backslash", r"SELECT X'\'; DROP TABLE t; --'", Unknown, &[]),
    ("E string continued as a plain string", "SELECT E'a'\n'\\'; DROP TABLE t; --'", Unknown, &[]),
    ("junk after a number", "SELECT 1e'x'", Unknown, &[]),
    ("unterminated string", "SELECT 'unterminated", Unknown, &[]),
    ("unterminated comment", "/* unterminated comment", Unknown, &[]),
    ("comment splitting a keyword", "DEL/**/ETE FROM t", Unknown, &[]),
    ("select then do", "SELECT 1; DO $$ $$", Unknown, &[]),
    ("function body with semicolons", "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END", Unknown, &[]),
    ("one unreadable statement among others", "SELECT 1; SELEC 2", Unknown, &[]),
    ("most sensitive of many", "VACUUM t; SET ROLE admin; SELECT * FROM pg_ls_dir('.')", Unknown, &["t"]),
    ("parameter with junk", "SELECT $1abc", Unknown, &[]),
    ("nul character", "SELECT 1\0; DROP TABLE t", Unknown, &[]),
    ("string taken for a table name", "DROP TABLE t, 'x'", Unknown, &["t"]),
    ("string taken for an insert target", "INSERT INTO 'x' VALUES (1)", Unknown, &[]),
    ("string taken for a cte name", "WITH 'a' AS (SELECT 1) SELECT * FROM a", Unknown, &["a"]),
];

fn check(name: &str, sql: &str, kind: StatementKind, tables: &[&str], cache: &ShapeCache) {
    let got = classify(sql);
    let expected: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
    assert_eq!(
        (got.kind, &got.tables),
        (kind, &expected),
        "corpus entry {name:?}: {sql:?} (note: {:?})",
        got.note
    );
    // Twice: the first fills the cache, the second is a hit.
    for round in ["miss", "hit"] {
        assert_eq!(
            *cache.classify(sql),
            got,
            "corpus entry {name:?} through the shape cache ({round}): {sql:?}"
        );
    }
}

#[test]
fn the_corpus_is_large_and_names_are_unique() {
    assert!(CORPUS.len() >= 170, "{} entries", CORPUS.len());
    let mut names: Vec<&str> = CORPUS.iter().map(|(name, ..)| *name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), CORPUS.len(), "duplicate corpus entry names");
}

#[test]
fn every_corpus_entry_classifies_as_expected_directly_and_through_the_cache() {
    let cache = ShapeCache::new(1024);
    for (name, sql, kind, tables) in CORPUS {
        check(name, sql, *kind, tables, &cache);
    }
}

#[test]
fn corpus_entries_classify_alike_with_other_literal_values() {
    // The same shapes with other literals: each hits the entry the corpus pass cached.
    let cache = ShapeCache::new(1024);
    for (_, sql, ..) in CORPUS {
        cache.classify(sql);
    }
    let variants = [
        (
            "pgbench -S",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 7;",
        ),
        ("where 'a'='a'", "UPDATE t SET a = 5 WHERE 'zz' = 'q'"),
        ("copy to server file", "COPY t TO '/var/lib/other.csv'"),
        (
            "dblink",
            "SELECT * FROM dblink('host=a port=1', $q$select 2$q$) AS r(a int)",
        ),
        (
            "statement in tagged dollar quotes",
            "SELECT $y$ anything; at all $y$",
        ),
    ];
    for (name, sql) in variants {
        let (_, _, kind, tables) = CORPUS
            .iter()
            .find(|(n, ..)| *n == name)
            .expect("the variant names a corpus entry");
        check(name, sql, *kind, tables, &cache);
    }
}

#[test]
fn statements_are_counted() {
    let cases = [
        ("", 0),
        ("  -- comment only", 0),
        ("/* a */ ; ;", 0),
        ("SELECT 1", 1),
        ("SELECT 1;", 1),
        ("SELECT 1;; SELECT 2", 2),
        ("SELECT 1; DROP TABLE t; --", 2),
        ("SELECT 'a;b'; SELECT $$;$$", 2),
        ("BEGIN; DELETE FROM t; COMMIT;", 3),
        ("SELECT 1; CLUSTER t", 2),
        ("SELECT 1; SELEC 2; SELECT 3", 3),
    ];
    for (sql, count) in cases {
        assert_eq!(classify(sql).statements, count, "statements in {sql:?}");
    }
}

#[test]
fn notes_explain_the_sensitive_cases() {
    let cases = [
        ("DELETE FROM t", "DELETE without WHERE"),
        (
            "UPDATE t SET a = 1 WHERE 1 = 1",
            "UPDATE with a WHERE that refers to no column",
        ),
        ("SELECT pg_read_file('x')", "calls pg_read_file"),
        (
            "WITH d AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM d",
            "data-modifying CTE",
        ),
        ("SELECT my_func()", "calls my_func"),
        ("SELEC 1", "sql parser error"),
        ("COPY t TO PROGRAM 'x'", "shell command"),
    ];
    for (sql, expected) in cases {
        let note = classify(sql).note.unwrap_or_default();
        assert!(
            note.contains(expected),
            "note for {sql:?} is {note:?}, expected to mention {expected:?}"
        );
    }
    assert_eq!(classify("SELECT * FROM t").note, None);
}

#[test]
fn a_text_over_the_limit_is_unknown_and_not_read() {
    let long = format!("SELECT '{}'", "x".repeat(1024 * 1024));
    let got = classify(&long);
    assert_eq!(got.kind, Unknown);
    assert!(got.note.is_some_and(|n| n.contains("longer than")));
    assert_eq!(ShapeCache::new(8).classify(&long).kind, Unknown);
}

#[test]
fn actions_are_named_as_the_design_says() {
    let actions: Vec<&str> = [Read, Write, Ddl, Destructive, Export, Privilege, Unknown]
        .into_iter()
        .map(StatementKind::action)
        .collect();
    assert_eq!(
        actions,
        [
            "db.read",
            "db.write",
            "db.ddl",
            "db.destructive",
            "db.export",
            "db.privilege",
            "db.unknown"
        ]
    );
    assert!(Read < Write && Write < Ddl && Ddl < Destructive && Destructive < Export);
    assert!(Export < Privilege && Privilege < Unknown);
}

#[test]
fn chains_too_long_to_read_safely_are_unknown_and_shorter_ones_are_read() {
    // A left-deep chain of a few hundred thousand levels would overflow the stack when the
    // parser's tree is dropped; the classifier refuses it before parsing.
    for deep in [
        format!("SELECT 1{}", "+1".repeat(20_000)),
        format!(
            "SELECT * FROM t WHERE {}",
            "a = 1 OR ".repeat(5_000) + "true"
        ),
        format!("SELECT 1{}", "::int".repeat(10_000)),
        format!("{}SELECT 1", "SELECT 1, 2 UNION ".repeat(12_000)),
        format!("SELECT {}1{}", "(".repeat(20_000), ")".repeat(20_000)),
    ] {
        let got = classify(&deep);
        assert_eq!(got.kind, Unknown, "{}…", &deep[..40]);
        assert_eq!(*ShapeCache::new(8).classify(&deep), got);
    }
    let long_but_fine = format!(
        "SELECT * FROM t WHERE {}",
        "a = 1 OR ".repeat(2_000) + "true"
    );
    assert_eq!(classify(&long_but_fine).kind, Read);
    let wide = format!("INSERT INTO t VALUES {}(0)", "(-1), ".repeat(10_000));
    assert_eq!(classify(&wide).kind, Write);
}
