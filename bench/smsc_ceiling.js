// The SMSC's ceiling, measured by a neutral client: node-smpp's own client (the same library
// the test SMSC is built on, non-blocking, in the same event-loop style) sending the same
// 10,000 UCS-2 messages as `sms_throughput raw`, WINDOW submits in flight per bind, BINDS
// binds. Not stormbell's code and not written to flatter it: the figure stormbell's session is
// compared with (bench/sms_vs_smpplib.sh takes the median of as many runs as stormbell's).
//
//   node bench/smsc_ceiling.js HOST PORT COUNT WINDOW BINDS      → one JSON line
'use strict';
const path = require('path');
const smpp = require(path.join(__dirname, '..', 'tests', 'smsc', 'node_modules', 'smpp'));

const [host, port, count, window, binds] = [
  process.argv[2],
  Number(process.argv[3]),
  Number(process.argv[4] || 10000),
  Number(process.argv[5] || 100),
  Number(process.argv[6] || 1),
];
const TEXT = '【东溟县防汛办】上坞村山洪灾害红色预警：请立即组织危险区群众转移至溪口镇中心小学，老弱病残优先。回复1收到';
const payload = Buffer.from(TEXT, 'utf16le').swap16();

let next = 0;
let accepted = 0;
let failed = 0;
let done = 0;
let start = 0;

function finish() {
  const secs = (process.hrtime.bigint() - start) / 1000n;
  const s = Number(secs) / 1e6;
  console.log(JSON.stringify({
    client: 'node-smpp ' + require(path.join(__dirname, '..', 'tests', 'smsc', 'node_modules', 'smpp', 'package.json')).version,
    window, binds, count, accepted, failed,
    seconds: Number(s.toFixed(3)),
    per_sec: Math.round(accepted / s),
  }));
  process.exit(0);
}

function pump(session) {
  const send = () => {
    if (next >= count) return;
    const i = next++;
    session.submit_sm({
      source_addr: '12379',
      destination_addr: String(13700000000 + i),
      data_coding: 8,
      registered_delivery: 1,
      short_message: payload,
    }, (pdu) => {
      if (pdu.command_status === 0) accepted++; else failed++;
      done++;
      if (done === count) finish();
      send();
    });
  };
  for (let k = 0; k < window; k++) send();
}

let bound = 0;
const sessions = [];
for (let b = 0; b < binds; b++) {
  const session = smpp.connect({ url: `smpp://${host}:${port}`, auto_enquire_link_period: 0 }, () => {
    session.bind_transceiver({ system_id: 'county', password: 'secret' }, (pdu) => {
      if (pdu.command_status !== 0) {
        console.error('bind refused: ' + pdu.command_status);
        process.exit(1);
      }
      // Receipts come back as deliver_sm: answered, as any client must.
      session.on('deliver_sm', (d) => session.send(d.response()));
      sessions.push(session);
      if (++bound === binds) {
        start = process.hrtime.bigint();
        sessions.forEach(pump);
      }
    });
  });
  session.on('error', (e) => { console.error('smpp: ' + e.message); process.exit(1); });
}
