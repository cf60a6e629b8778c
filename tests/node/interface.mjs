// vidretry's SQL interface through Node's pg, as a grammY/Prisma bot would call it. The
// connection comes from the standard PG* environment variables (PGHOST may be a socket
// directory). One scenario per run; each result is a JSON line on stdout.
//
//   node interface.mjs orders        an order and its video in one transaction, committed;
//                                    another order and video, rolled back
//   node interface.mjs retry ID USER vidretry_retry, refused or not: its SQLSTATE
//   node interface.mjs press ID USER vidretry_press_retry: its outcome and generation
//   node interface.mjs ask NAME USER vidretry_enqueue, then the asset's state (vidretry_asset)
//   node interface.mjs slow NAME     enqueue, wait 1.5 s, then commit: when it committed
import pg from "pg";

const client = new pg.Client();
const say = (fact) => console.log(JSON.stringify(fact));
const [scenario, ...args] = process.argv.slice(2);

await client.connect();
try {
  if (scenario === "orders") {
    await client.query("CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, asset bigint)");
    for (const [name, user, outcome] of [["Маша", 501, "COMMIT"], ["Петя", 502, "ROLLBACK"]]) {
      await client.query("BEGIN");
      const { rows } = await client.query(
        "SELECT vidretry_enqueue($1, $2, NULL, $3::jsonb, $4) AS asset",
        [name, user, JSON.stringify({ voice: "alto" }), 3],
      );
      await client.query("INSERT INTO orders (asset) VALUES ($1)", [rows[0].asset]);
      await client.query(outcome);
      say({ name, asset: rows[0].asset, outcome });
    }
  } else if (scenario === "retry") {
    try {
      const { rows } = await client.query("SELECT vidretry_retry($1, $2) AS generation", args);
      say({ generation: rows[0].generation });
    } catch (error) {
      say({ code: error.code, message: error.message });
    }
  } else if (scenario === "press") {
    const { rows } = await client.query(
      "SELECT outcome, generation FROM vidretry_press_retry($1, $2)", args,
    );
    say(rows[0]);
  } else if (scenario === "ask") {
    const { rows: [{ asset }] } = await client.query(
      "SELECT vidretry_enqueue($1, $2) AS asset", args,
    );
    const { rows: [{ state }] } = await client.query(
      "SELECT state FROM vidretry_asset($1)", [asset],
    );
    say({ asset, state });
  } else if (scenario === "slow") {
    await client.query("BEGIN");
    const { rows } = await client.query("SELECT vidretry_enqueue($1, 601) AS asset", args);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await client.query("COMMIT");
    say({ asset: rows[0].asset, committed_at: Date.now() / 1000 });
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
} finally {
  await client.end();
}
