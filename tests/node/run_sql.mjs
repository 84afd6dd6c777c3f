// The SQL on stdin, run with the `pg` package as a web app's own code runs it: one client set up
// from the PG* environment (PGHOST may name a unix socket's directory), the text sent as one
// simple query, so its BEGIN ... COMMIT is one transaction. Prints each statement's command and
// row count as JSON; a failing statement exits non-zero with PostgreSQL's message.
import pg from "pg";

let sql = "";
for await (const chunk of process.stdin) sql += chunk;

const client = new pg.Client();
await client.connect();
try {
  const results = [].concat(await client.query(sql));
  console.log(JSON.stringify(results.map((r) => ({ command: r.command, rowCount: r.rowCount }))));
} finally {
  await client.end();
}
