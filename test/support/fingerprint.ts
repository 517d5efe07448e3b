// Everything an attack, a refused command or an auditor's tool could change in a database, as one
// record to compare before and after: relations (in any schema, with owner and privileges), columns,
// capsul's functions (source and privileges), triggers (and whether enabled), capsul's roles, large
// objects, every table's rows and every sequence's position. Read as the superuser. One table's rows are
// left out: webhook_deliveries counts the deliveries the hub refused, as the metrics counter does (a
// refusal is observed, like a log line; the incidents job reads it): one row per configured provider,
// updated, never more rows.
import type pg from 'pg';

/** Tables whose rows record what was refused, by design. */
const observationTables = ['webhook_deliveries'];

export async function databaseFingerprint(admin: pg.Pool | pg.Client): Promise<Record<string, string>> {
  const q = async (sql: string) => (await admin.query(sql)).rows as Record<string, string>[];
  const [catalog] = await q(`SELECT
    (SELECT string_agg(n.nspname || '.' || c.relname || ':' || c.relkind::text || ':' || c.relowner::regrole::text || ':' || coalesce(c.relacl::text, ''),
                       ',' ORDER BY n.nspname, c.relname)
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg\\_temp%'
         AND n.nspname NOT LIKE 'pg\\_toast\\_temp%') AS relations,
    (SELECT string_agg(c.relname || '.' || a.attname, ',' ORDER BY c.relname, a.attnum)
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
       WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
    (SELECT string_agg(p.oid::regprocedure::text || ':' || md5(p.prosrc) || ':' || coalesce(p.proacl::text, ''), ',' ORDER BY p.oid::regprocedure::text)
       FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace) AS functions,
    (SELECT string_agg(t.tgrelid::regclass::text || '.' || t.tgname || ':' || t.tgenabled::text, ',' ORDER BY t.tgrelid::regclass::text, t.tgname)
       FROM pg_trigger t WHERE NOT t.tgisinternal) AS triggers,
    (SELECT string_agg(rolname || ':' || rolsuper::text || rolcanlogin::text || rolcreaterole::text || rolbypassrls::text, ',' ORDER BY rolname)
       FROM pg_roles WHERE rolname LIKE 'capsul\\_%') AS roles,
    (SELECT count(*)::text FROM pg_largeobject_metadata) AS large_objects`);
  const shot: Record<string, string> = { ...catalog };
  for (const { relname } of await q(
    `SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY relname`,
  )) {
    if (observationTables.includes(relname!)) continue;
    const [row] = await q(
      `SELECT count(*)::text || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS h FROM "${relname}" t`,
    );
    shot[`rows ${relname}`] = row!.h!;
  }
  for (const { relname } of await q(
    `SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'S' ORDER BY relname`,
  )) {
    const [row] = await q(`SELECT last_value::text || ':' || is_called::text AS v FROM "${relname}"`);
    shot[`sequence ${relname}`] = row!.v!;
  }
  return shot;
}
