#!/usr/bin/env node
// tilefn from Node.js, with nothing tilefn-specific installed: plain gRPC (@grpc/grpc-js) with the
// repository's .proto files loaded at run time (@grpc/proto-loader, so no generated code to
// drift), results decoded from Arrow IPC as they stream in (apache-arrow), and errors read from
// the google.rpc.Status in the `grpc-status-details-bin` trailer (google-proto-files).
//
//   npm ci && TILEFN_TOKEN=$(cat ../../state/dev-token) node client.mjs [HOST:PORT]
//
// Steps: list arrays; run a Python-source UDF over a range of the demo array with JSON
// arguments; register a source UDF by name (once) and run it over another range; provoke two
// errors. Readable text goes to stderr, one JSON line per step (and per record batch) to
// stdout. Rules for foreign clients: docs/clients.md.
//
// Environment: TILEFN_TARGET (default 127.0.0.1:50051; the first argument wins), TILEFN_TOKEN
// (sent as "authorization: Bearer ..."), TILEFN_ARRAY (default tiledb://demo/temperature),
// TILEFN_NAMESPACE (where the UDF is registered; default demo), TILEFN_PROTOS (the protos/
// folder; default ../../protos). TLS: TILEFN_TLS=1 (system roots), TILEFN_CA_FILE (a PEM
// bundle; implies TLS), TILEFN_CLIENT_CERT and TILEFN_CLIENT_KEY (mutual TLS).

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { DataType, RecordBatchReader } from 'apache-arrow';
import googleProtoFiles from 'google-proto-files';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const TARGET = process.argv[2] || env.TILEFN_TARGET || '127.0.0.1:50051';
const ARRAY = env.TILEFN_ARRAY || 'tiledb://demo/temperature';
const NAMESPACE = env.TILEFN_NAMESPACE || 'demo';
const PROTOS = env.TILEFN_PROTOS || path.resolve(HERE, '../../protos');
const DEADLINE_MS = 60_000;
const KEEP = 100; // values of a result column printed in full, at most

// A generator UDF: each item it yields becomes its own record batch(es) of one Arrow stream.
const FAHRENHEIT = `
def to_fahrenheit(data, factor, offset=0.0, rows_per_batch=91):
    """The temperatures, converted, rows_per_batch days at a time."""
    temp = data["temp"]
    for start in range(0, temp.shape[0], rows_per_batch):
        yield temp[start : start + rows_per_batch] * factor + offset
`;

// Registered once by name; anyone it is shared with runs it without sending code.
const STATION_STATS = `import numpy as np


def station_stats(data, threshold, first_station=0):
    """Per station: the mean temperature and the number of days above threshold."""
    temp = data["temp"]
    return {
        "station": np.arange(first_station, first_station + temp.shape[1]),
        "mean": temp.mean(axis=0),
        "days_above": (temp > threshold).sum(axis=0),
    }
`;

const RAISES = `
def check(data, station):
    raise ValueError(f"station {station} is offline")
`;

// ---------------------------------------------------------------- output

/** One machine-readable line on stdout. */
function emit(record) {
  process.stdout.write(
    `${JSON.stringify(record, (_, v) => (typeof v === 'bigint' ? Number(v) : v))}\n`,
  );
}

/** Readable text on stderr. */
function say(text) {
  process.stderr.write(`${text}\n`);
}

// ---------------------------------------------------------------- gRPC plumbing

function loadServices() {
  const files = ['array_service', 'registry_service', 'udf_service'].map(
    (f) => `tilefn/v1/${f}.proto`,
  );
  // keepCase: the field names of the .proto (task_id, not taskId); longs as strings: uint64
  // safe; defaults: unset fields read as their zero values (proto3 sends no false or 0).
  const definition = protoLoader.loadSync(files, {
    includeDirs: [PROTOS],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).tilefn.v1;
}

const rpcTypes = googleProtoFiles.loadSync(
  ['status.proto', 'error_details.proto'].map((f) => googleProtoFiles.getProtoPath('rpc', f)),
  { keepCase: true },
);
const Status = rpcTypes.lookupType('google.rpc.Status');

function credentials() {
  const ca = env.TILEFN_CA_FILE;
  if (!ca && env.TILEFN_TLS !== '1') return grpc.credentials.createInsecure();
  const read = (file) => (file ? readFileSync(file) : null);
  return grpc.credentials.createSsl(
    read(ca),
    read(env.TILEFN_CLIENT_KEY),
    read(env.TILEFN_CLIENT_CERT),
  );
}

/** The token goes in every call's metadata (plaintext channels refuse call credentials). */
function auth() {
  const metadata = new grpc.Metadata();
  if (env.TILEFN_TOKEN) metadata.set('authorization', `Bearer ${env.TILEFN_TOKEN}`);
  return metadata;
}

const callOptions = () => ({ deadline: Date.now() + DEADLINE_MS });

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, auth(), callOptions(), (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

/** The google.rpc.Status of a failed call, its details decoded by their type URLs. */
function errorDetails(error) {
  const [raw] = error.metadata?.get('grpc-status-details-bin') ?? [];
  const [taskId] = error.metadata?.get('tilefn-task-id') ?? [];
  const out = {
    code: grpc.status[error.code],
    message: error.details,
    task_id: taskId ?? null,
    details: [],
  };
  if (!raw) return out;
  const status = Status.toObject(Status.decode(raw), { defaults: true });
  for (const any of status.details) {
    const type = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const message = rpcTypes.lookupType(type);
    const detail = message.toObject(message.decode(any.value), { longs: Number, defaults: true });
    out.details.push(type);
    if (type === 'google.rpc.ErrorInfo')
      Object.assign(out, {
        reason: detail.reason,
        domain: detail.domain,
        metadata: detail.metadata,
      });
    if (type === 'google.rpc.DebugInfo') out.traceback = detail.detail;
    if (type === 'google.rpc.RetryInfo')
      out.retry_delay_seconds = detail.retry_delay.seconds + detail.retry_delay.nanos / 1e9;
  }
  return out;
}

// ---------------------------------------------------------------- requests

const json = (value) => ({ json: JSON.stringify(value) });
const int = (n) => ({ int64_value: String(n) });
/** One dimension's inclusive [start, end] pairs. */
const dim = (...pairs) => ({
  ranges: pairs.map(([start, end]) => ({ start: int(start), end: int(end) })),
});

// ---------------------------------------------------------------- Arrow results

/** The response stream's `ipc` pieces, as they arrive; the other messages land in `side`. */
async function* ipcPieces(call, side) {
  for await (const response of call) {
    if (response.kind === 'ipc') {
      side.pieces += 1;
      side.bytes += response.ipc.length;
      yield response.ipc;
    } else {
      side[response.kind] = response[response.kind];
    }
  }
}

/** A column's values, flat in C order (a fixed_size_list column: its rows' items, in turn). */
function flatValues(column) {
  if (!DataType.isFixedSizeList(column.type)) return Array.from(column.toArray());
  const out = [];
  for (const row of column) out.push(...row.toArray());
  return out;
}

/** Whether a column holds numbers (or fixed-size lists of them): only those get sums. */
const numeric = (type) =>
  DataType.isInt(type) ||
  DataType.isFloat(type) ||
  (DataType.isFixedSizeList(type) && numeric(type.children[0].type));
const sum = (values) => values.reduce((a, v) => a + Number(v), 0);
const fieldMeta = (field, key) => field.metadata.get(key);

/** One batch, readably: its rows and, per column, its dtype and flat values. */
function describeBatch(batch) {
  const columns = {};
  for (const field of batch.schema.fields) {
    const values = flatValues(batch.getChild(field.name));
    const dtype = fieldMeta(field, 'tilefn.dtype') ?? String(field.type);
    columns[field.name] = { dtype, values, sum: numeric(field.type) ? sum(values) : null };
  }
  return { rows: batch.numRows, columns };
}

/**
 * Runs ExecuteUdf and decodes the result while it streams: each piece's bytes are handed to
 * apache-arrow's reader as they arrive, and each record batch is reported as soon as its last
 * byte is in (`pieces_so_far` shows how much of the stream had arrived). Columns are
 * concatenated per docs/results.md ("Reading results without tilefn").
 */
async function execute(udfService, step, request) {
  const call = udfService.ExecuteUdf(request, auth(), callOptions());
  const side = { pieces: 0, bytes: 0, task: null, logs: null, summary: null };
  const pieces = ipcPieces(call, side);
  // The reader stops at the end-of-stream marker; hiding `return` keeps it from cancelling the
  // call, whose summary is still to come.
  const reader = await RecordBatchReader.from({
    [Symbol.asyncIterator]: () => ({ next: () => pieces.next() }),
  });
  const { schema } = await reader.open({ autoDestroy: false });
  const columns = {};
  let batches = 0;
  for await (const batch of reader) {
    const described = describeBatch(batch);
    const sums = Object.fromEntries(Object.entries(described.columns).map(([k, c]) => [k, c.sum]));
    emit({
      step,
      event: 'batch',
      index: batches,
      rows: described.rows,
      pieces_so_far: side.pieces,
      sums,
    });
    const after = `after ${side.pieces} piece(s) of the stream`;
    say(`  batch ${batches}: ${described.rows} rows ${after}; sums ${JSON.stringify(sums)}`);
    for (const [name, column] of Object.entries(described.columns)) {
      keep(columns, name, column, described.rows, sums[name]);
    }
    batches += 1;
  }
  // Drain the call (logs, summary): no IPC bytes may follow the end-of-stream.
  for await (const extra of pieces) {
    throw new Error(`${extra.length} bytes after the Arrow end-of-stream`);
  }
  return { schema, columns, batches, side };
}

/**
 * What the example keeps of a column across batches: its rows, sum and first KEEP values, not
 * all of them (a streamed result may be larger than memory).
 */
function keep(columns, name, column, rows, total) {
  const kept = (columns[name] ??= { dtype: column.dtype, rows: 0, sum: 0, values: [] });
  kept.rows += rows;
  kept.sum = total === null ? null : kept.sum + total;
  kept.values.push(...column.values.slice(0, KEEP + 1 - kept.values.length));
}

function resultRecord(step, result) {
  const { schema, columns, batches, side } = result;
  const kind = schema.metadata.get('tilefn.kind');
  const record = {
    step,
    kind,
    stream: schema.metadata.get('tilefn.stream') === 'true',
    batches,
    pieces: side.pieces,
    received_bytes: side.bytes,
  };
  record.task_id = side.task?.task_id;
  record.summary = {
    rows: Number(side.summary?.rows),
    batches: Number(side.summary?.batches),
    ipc_bytes: Number(side.summary?.ipc_bytes),
  };
  record.columns = {};
  for (const field of schema.fields) {
    const { dtype, rows, sum: total, values } = columns[field.name];
    // An array column's shape is [rows, ...tilefn.item_shape] (docs/results.md).
    const shape = [rows, ...JSON.parse(fieldMeta(field, 'tilefn.item_shape') ?? '[]')];
    const out = { dtype, shape, sum: total, head: values.slice(0, 5) };
    if (values.length <= KEEP) out.values = values;
    // A `json` result: one JSON text per row (one per item of a streamed result).
    if (kind === 'json' && out.values) out.values = values.map((text) => JSON.parse(text));
    record.columns[field.name] = out;
  }
  return record;
}

// ---------------------------------------------------------------- steps

async function listArrays(services) {
  const response = await unary(services.arrays, 'ListArrays', { page_size: 100 });
  const arrays = response.arrays.map(({ uri, namespace, sparse }) => ({ uri, namespace, sparse }));
  emit({ step: 'list_arrays', arrays });
  say('Arrays you may read:');
  for (const a of arrays) say(`  ${a.uri} (${a.sparse ? 'sparse' : 'dense'})`);
}

async function sourceUdf(services) {
  say(`\nA Python-source UDF over days 0-363 x every station of ${ARRAY}`);
  say('(pieces of at most 64 KiB):');
  const result = await execute(services.udf, 'source_udf', {
    udf: { source: { text: FAHRENHEIT, entry_point: 'to_fahrenheit' } },
    args: [json(1.8)],
    kwargs: { offset: json(32), rows_per_batch: json(91) },
    // No pairs for a dimension: its whole domain.
    arrays: [{ uri: ARRAY, ranges: [dim([0, 363]), dim()], attributes: ['temp'] }],
    options: { max_chunk_bytes: 65536 },
  });
  const record = resultRecord('source_udf', result);
  emit(record);
  const { dtype, shape, sum: total } = record.columns.values;
  const mean = (total / (shape[0] * shape[1])).toFixed(3);
  say(
    `  -> ${record.kind} ${dtype} of shape [${shape}] in ${record.batches} batches, mean ${mean} F`,
  );
}

const STATS_DEFINITION = {
  source: STATION_STATS,
  entry_point: 'station_stats',
  description: 'Per station: mean temperature and days above a threshold',
  tags: ['demo', 'node'],
  parameters: [
    { name: 'data', annotation: 'dict[str, numpy.ndarray]' },
    { name: 'threshold', annotation: 'float' },
    { name: 'first_station', annotation: 'int', has_default: true, default_json: '0' },
  ],
};

/** Registers `NAMESPACE/station_stats` unless it exists with this very source (else updates it). */
async function register(services) {
  const name = `${NAMESPACE}/station_stats`;
  let udf;
  let action = 'registered';
  try {
    udf = await unary(services.registry, 'RegisterUdf', {
      namespace: NAMESPACE,
      name: 'station_stats',
      definition: STATS_DEFINITION,
    });
  } catch (error) {
    if (errorDetails(error).reason !== 'ERROR_REASON_UDF_EXISTS') throw error;
    udf = await unary(services.registry, 'GetUdf', { name });
    action = 'existing';
    if (udf.definition.source !== STATION_STATS || udf.definition.entry_point !== 'station_stats') {
      udf = await unary(services.registry, 'UpdateUdf', { name, definition: STATS_DEFINITION });
      action = 'updated';
    }
  }
  emit({ step: 'register', name: udf.name, version: udf.version, action, digest: udf.digest });
  say(`\n${name}: ${action}, version ${udf.version}`);
  return `${udf.name}@${udf.version}`;
}

async function registeredUdf(services, ref) {
  say(`Registered UDF ${ref} over days 0-30 and 180-210 x stations 10-19:`);
  const result = await execute(services.udf, 'registered_udf', {
    udf: { registered: ref },
    args: [json(24.0)],
    kwargs: { first_station: json(10) },
    arrays: [
      { uri: ARRAY, ranges: [dim([0, 30], [180, 210]), dim([10, 19])], attributes: ['temp'] },
    ],
  });
  const record = resultRecord('registered_udf', result);
  emit(record);
  const { station, mean, days_above: above } = record.columns;
  say(
    station.values
      .map(
        (s, i) =>
          `  station ${s}: mean ${mean.values[i].toFixed(2)} C, ${above.values[i]} days above 24 C`,
      )
      .join('\n'),
  );
}

/** A call that must fail: reports its status and the decoded details. */
async function failing(services, step, request) {
  try {
    await execute(services.udf, step, request);
  } catch (error) {
    if (error.code === undefined) throw error;
    const details = errorDetails(error);
    emit({ step, ...details });
    say(`\n${step}: ${details.code} ${details.reason} ${JSON.stringify(details.metadata)}`);
    say(`  ${details.message.split('\n')[0]}`);
    if (details.traceback)
      say(`  remote traceback:\n${details.traceback.trimEnd().replace(/^/gm, '    ')}`);
    return;
  }
  throw new Error(`${step} was expected to fail`);
}

async function main() {
  const v1 = loadServices();
  const channel = credentials();
  const services = {
    arrays: new v1.ArrayService(TARGET, channel),
    registry: new v1.RegistryService(TARGET, channel),
    udf: new v1.UdfService(TARGET, channel),
  };
  if (!env.TILEFN_TOKEN) say('TILEFN_TOKEN is not set: calls will fail with UNAUTHENTICATED');
  await listArrays(services);
  await sourceUdf(services);
  await registeredUdf(services, await register(services));
  await failing(services, 'udf_raises', {
    udf: { source: { text: RAISES } },
    args: [json(7)],
    arrays: [{ uri: ARRAY, ranges: [dim([0, 0])] }],
  });
  await failing(services, 'unknown_array', {
    udf: { registered: `${NAMESPACE}/station_stats` },
    args: [json(0)],
    arrays: [{ uri: `tiledb://${NAMESPACE}/no-such-array` }],
  });
  for (const client of Object.values(services)) client.close();
}

main().catch((error) => {
  say(`failed: ${error.stack ?? error}`);
  if (error.code !== undefined) emit({ step: 'fatal', ...errorDetails(error) });
  process.exitCode = 1;
});
