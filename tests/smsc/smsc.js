#!/usr/bin/env node
// A test SMS centre for stormbell, built on node-smpp (an SMPP implementation nobody on this
// project wrote). It behaves like a carrier's SMSC as far as the dispatch tests need:
//
//   * binds are checked against accounts (system_id:password); a wrong one gets ESME_RBINDFAIL;
//   * submit_sm gets a message id, or ESME_RINVDSTADR for a number that is not a Chinese
//     mobile (1[3-9]xxxxxxxxx, optionally with 86 in front);
//   * with registered_delivery, a delivery receipt follows (deliver_sm, esm_class 4, Appendix B
//     text); a receipt the ESME does not acknowledge with ESME_ROK is sent again, as SMSCs do;
//   * concatenated parts are reassembled per handset and logged as what the phone shows;
//   * the centre may unbind a session itself (/unbind): it counts the unbind_resp it gets back
//     before closing, as SMPP 3.4 §4.2 asks of the ESME, and closes after 1 s regardless;
//   * on command (HTTP on a control port): throttle or fail the next N submits, drop every
//     connection (now, after N more submits, or every N PDUs it reads), refuse connections,
//     inject a message from a phone (whole, or in parts with an 8-bit or 16-bit UDH reference or
//     SAR parameters, in any order, with parts missing) or a receipt for any id, mark a number
//     undeliverable;
//   * a carrier's contract per account (/contract?account=ID&binds=B&tps=T): at most B binds
//     at once (one more gets ESME_RBINDFAIL, as centres answer a bind over the account's
//     limit), and at most T submits in each calendar second across all its binds (one more
//     gets ESME_RTHROTTLED: a per-second counter, the strictest form carriers use, as CMPP's
//     flow-control result 8 is); per account, the counts of both and the busiest second;
//   * quirks of carriers' centres, each a mode: ids in hexadecimal in submit_sm_resp and in
//     decimal in the receipt (/ids?mode=hex-decimal; no receipted_message_id then, as many
//     centres send none), answers held back past the client's timeout (/late?every=K&ms=M).
//
// Logs (JSON lines, in --log DIR): submits.jsonl (every submit_sm and its answer) and
// phones.jsonl (every complete message as a handset would show it).
//
//   node smsc.js --port 2775 --control 2776 --log DIR [--accounts id:pw,id:pw] [--receipt-ms 20]

'use strict';
const smpp = require('smpp');
const http = require('http');
const fs = require('fs');
const path = require('path');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
}
// Port 0 lets the system choose; the chosen ports are printed on the first line of stdout.
const port = Number(args.port || 0);
const controlPort = Number(args.control || 0);
const logDir = args.log || '.';
const receiptMs = Number(args['receipt-ms'] || 20);
const accounts = new Map(
  (args.accounts || 'county:secret,backup:backup1').split(',').map((a) => a.split(':'))
);
fs.mkdirSync(logDir, { recursive: true });
const submitsLog = fs.createWriteStream(path.join(logDir, 'submits.jsonl'), { flags: 'a' });
const phonesLog = fs.createWriteStream(path.join(logDir, 'phones.jsonl'), { flags: 'a' });

const state = {
  binds: 0,
  bindsRefused: 0,
  connectionsRefused: 0,
  submits: 0,
  accepted: 0,
  rejected: 0,
  receiptsSent: 0,
  receiptsAcked: 0,
  receiptsRetried: 0,
  mo: 0,
  moAcked: 0,
  enquireLinks: 0,
  throttle: { count: 0, status: smpp.ESME_RTHROTTLED, part: 0 },
  dropAfter: -1,
  // Close every connection each time this many PDUs have been read (0: never), and how
  // many times it did.
  dropEvery: 0,
  pdusSinceDrop: 0,
  drops: 0,
  // How message ids are written: 'plain' (M00000001 in both), 'hex-decimal'.
  ids: 'plain',
  // Every `every`-th submit_sm is answered `ms` late; how many were.
  late: { every: 0, ms: 0 },
  lateAnswers: 0,
  refusing: false,
  // Carriers' contracts: account → {binds, tps, bound, second, inSecond, busiest,
  // bindsRefused, throttled, accepted}.
  contracts: new Map(),
  undeliverable: new Set(),
  // Numbers of the right shape that the network does not know (ESME_RINVDSTADR).
  invalid: new Set(),
  // Centre-initiated unbinds sent, and their unbind_resp received.
  unbindsSent: 0,
  unbindResps: 0,
  // Parts of concatenated messages: key dest|ref → {total, parts: {seq: text}, ids: []}
  partial: new Map(),
};
let nextId = 1;
const sessions = new Set();

const MOBILE = /^(\+?86)?1[3-9]\d{9}$/;

function logSubmit(entry) {
  submitsLog.write(JSON.stringify(entry) + '\n');
}

function concatInfo(udh) {
  if (!udh) return null;
  for (const u of udh) {
    // IEI 0x00: 8-bit reference; IEI 0x08: 16-bit reference.
    if (u[0] === 0x00 && u[1] === 3) return { ref: u[2], total: u[3], seq: u[4] };
    if (u[0] === 0x08 && u[1] === 4) return { ref: u[2] * 256 + u[3], total: u[4], seq: u[5] };
  }
  return null;
}

function deliverReceipt(session, submit, id, tries) {
  const stat = state.undeliverable.has(submit.destination_addr) ? 'UNDELIV' : 'DELIVRD';
  const err = stat === 'DELIVRD' ? '000' : '001';
  const now = new Date();
  const stamp =
    String(now.getUTCFullYear()).slice(2) +
    String(now.getUTCMonth() + 1).padStart(2, '0') +
    String(now.getUTCDate()).padStart(2, '0') +
    String(now.getUTCHours()).padStart(2, '0') +
    String(now.getUTCMinutes()).padStart(2, '0');
  const text = `id:${id} sub:001 dlvrd:${stat === 'DELIVRD' ? '001' : '000'} submit date:${stamp} done date:${stamp} stat:${stat} err:${err} text:`;
  const fields = {
    source_addr: submit.destination_addr,
    destination_addr: submit.source_addr,
    esm_class: 4,
    short_message: text,
  };
  if (state.ids === 'plain') {
    fields.receipted_message_id = id;
    fields.message_state = stat === 'DELIVRD' ? 2 : 5;
  }
  sendDeliver(session, fields, 'receipt', tries);
}

// Send a deliver_sm; resend up to 5 times, a second apart, until the ESME answers ESME_ROK.
// Like a real SMSC it stores what it could not deliver: if the session is gone, it goes over
// another bind of the same account (waiting for one to come back).
const accountOf = new Map();
// Sessions counted against a contract (the one in force when they bound).
const contracted = new Map();
const unanswered = new Map();
function sendDeliver(session, fields, kind, tries) {
  if (!sessions.has(session)) {
    const who = accountOf.get(session);
    const other = [...sessions].find((s) => accountOf.get(s) === who);
    if (other) {
      session = other;
    } else {
      if (tries < 30) setTimeout(() => sendDeliver(session, fields, kind, tries + 1), 200);
      return;
    }
  }
  if (kind === 'receipt') state.receiptsSent++;
  // Unanswered when the link drops: delivered again over another bind (see 'close' below).
  const entry = { fields, kind, tries };
  if (!unanswered.has(session)) unanswered.set(session, new Set());
  unanswered.get(session).add(entry);
  session.deliver_sm(fields, (resp) => {
    unanswered.get(session)?.delete(entry);
    if (resp.command_status === 0) {
      if (kind === 'receipt') state.receiptsAcked++;
      else state.moAcked++;
    } else if (tries < 5) {
      if (kind === 'receipt') state.receiptsRetried++;
      setTimeout(() => sendDeliver(session, fields, kind, tries + 1), 1000);
    }
  });
}

function firstSession() {
  for (const s of sessions) return s;
  return null;
}

const server = smpp.createServer({ debug: false }, (session) => {
  let boundAs = null;
  session.on('error', () => {});
  // A centre that closes the link every N PDUs, wherever that falls (between the parts of a
  // text, with answers still owed).
  session.on('pdu', () => {
    if (state.dropEvery > 0 && ++state.pdusSinceDrop >= state.dropEvery) {
      state.pdusSinceDrop = 0;
      state.drops++;
      setImmediate(dropAll);
    }
  });
  session.on('close', () => {
    sessions.delete(session);
    const held = contracted.get(session);
    if (held) {
      held.bound--;
      contracted.delete(session);
    }
    const lost = unanswered.get(session);
    unanswered.delete(session);
    if (lost) {
      for (const e of lost) {
        state.redelivered = (state.redelivered || 0) + 1;
        setTimeout(() => sendDeliver(session, e.fields, e.kind, e.tries + 1), 200);
      }
    }
  });
  const bind = (pdu) => {
    session.pause();
    const pw = accounts.get(pdu.system_id);
    if (pw === undefined || pw !== pdu.password) {
      state.bindsRefused++;
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    const contract = state.contracts.get(pdu.system_id);
    if (contract && contract.bound >= contract.binds) {
      contract.bindsRefused++;
      state.bindsRefused++;
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    if (contract) {
      contract.bound++;
      contracted.set(session, contract);
    }
    boundAs = pdu.system_id;
    accountOf.set(session, boundAs);
    state.binds++;
    sessions.add(session);
    session.send(pdu.response({ system_id: 'node-smsc' }));
    session.resume();
  };
  session.on('bind_transceiver', bind);
  session.on('bind_transmitter', bind);
  session.on('enquire_link', (pdu) => {
    state.enquireLinks++;
    session.send(pdu.response());
  });
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.close();
  });
  session.on('submit_sm', (pdu) => {
    state.submits++;
    const msg = pdu.short_message || {};
    const text = typeof msg.message === 'string' ? msg.message : Buffer.from(msg.message || []).toString('hex');
    const concat = concatInfo(msg.udh);
    const entry = {
      at: new Date().toISOString(),
      system_id: boundAs,
      seq: pdu.sequence_number,
      dest: pdu.destination_addr,
      source: pdu.source_addr,
      data_coding: pdu.data_coding,
      esm_class: pdu.esm_class,
      concat,
      text,
    };
    if (state.throttle.count > 0 && (!state.throttle.part || (concat && concat.seq === state.throttle.part))) {
      state.throttle.count--;
      entry.status = state.throttle.status;
      logSubmit(entry);
      session.send(pdu.response({ command_status: state.throttle.status }));
      return;
    }
    const contract = state.contracts.get(boundAs);
    if (contract) {
      const second = Math.floor(Date.now() / 1000);
      if (second !== contract.second) {
        contract.second = second;
        contract.inSecond = 0;
      }
      if (contract.inSecond >= contract.tps) {
        contract.throttled++;
        entry.status = smpp.ESME_RTHROTTLED;
        logSubmit(entry);
        session.send(pdu.response({ command_status: smpp.ESME_RTHROTTLED }));
        return;
      }
      contract.inSecond++;
      contract.accepted++;
      contract.busiest = Math.max(contract.busiest, contract.inSecond);
    }
    if (!MOBILE.test(pdu.destination_addr) || state.invalid.has(pdu.destination_addr)) {
      state.rejected++;
      entry.status = smpp.ESME_RINVDSTADR;
      logSubmit(entry);
      session.send(pdu.response({ command_status: smpp.ESME_RINVDSTADR }));
      return;
    }
    const n = nextId++;
    // The id in the answer, and as the receipt will write it.
    let id = 'M' + String(n).padStart(8, '0');
    let receiptId = id;
    if (state.ids === 'hex-decimal') {
      const v = 0x1a2b0000 + n;
      id = v.toString(16).toUpperCase().padStart(10, '0');
      receiptId = String(v);
    }
    state.accepted++;
    entry.status = 0;
    entry.id = id;
    logSubmit(entry);
    if (state.late.every > 0 && state.submits % state.late.every === 0) {
      state.lateAnswers++;
      setTimeout(() => session.send(pdu.response({ message_id: id })), state.late.ms);
    } else {
      session.send(pdu.response({ message_id: id }));
    }
    // What the phone shows: single messages at once, concatenated ones when complete.
    if (!concat) {
      phonesLog.write(JSON.stringify({ dest: pdu.destination_addr, text, ids: [id], parts: 1 }) + '\n');
    } else {
      const key = `${pdu.destination_addr}|${concat.ref}|${concat.total}`;
      const p = state.partial.get(key) || { parts: {}, ids: [] };
      p.parts[concat.seq] = text;
      p.ids.push(id);
      state.partial.set(key, p);
      if (Object.keys(p.parts).length === concat.total) {
        let whole = '';
        for (let i = 1; i <= concat.total; i++) whole += p.parts[i] === undefined ? '?' : p.parts[i];
        state.partial.delete(key);
        phonesLog.write(
          JSON.stringify({ dest: pdu.destination_addr, text: whole, ids: p.ids, parts: concat.total }) + '\n'
        );
      }
    }
    if (pdu.registered_delivery & 1) {
      setTimeout(() => deliverReceipt(session, pdu, receiptId, 0), receiptMs);
    }
    if (state.dropAfter > 0) {
      state.dropAfter--;
      if (state.dropAfter === 0) {
        state.dropAfter = -1;
        dropAll();
      }
    }
  });
});

function dropAll() {
  for (const s of sessions) {
    try {
      s.socket.destroy();
    } catch (e) {}
  }
  sessions.clear();
}

// node-smpp's server is a net.Server: refuse connections while "down".
server.on('connection', (socket) => {
  if (state.refusing) {
    state.connectionsRefused++;
    socket.destroy();
  }
});
let smppReady = new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));

function reply(res, code, body) {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

http
  .createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const q = Object.fromEntries(url.searchParams);
    switch (url.pathname) {
      case '/status':
        return reply(res, 200, {
          ...state,
          undeliverable: [...state.undeliverable],
          invalid: [...state.invalid],
          partial: state.partial.size,
          sessions: sessions.size,
          contracts: Object.fromEntries(state.contracts),
        });
      case '/unbind': {
        let n = 0;
        for (const sess of sessions) {
          n++;
          state.unbindsSent++;
          const timer = setTimeout(() => sess.close(), 1000);
          sess.unbind({}, () => {
            state.unbindResps++;
            clearTimeout(timer);
            sess.close();
          });
        }
        return reply(res, 200, { unbound: n });
      }
      case '/throttle':
        // part=N: only the Nth part of concatenated messages is throttled (a centre's rate
        // limit falling between the parts of one text).
        state.throttle = {
          count: Number(q.count || 1),
          status: Number(q.status || smpp.ESME_RTHROTTLED),
          part: q.part ? Number(q.part) : 0,
        };
        return reply(res, 200, state.throttle);
      case '/contract': {
        // Binds already up stay up (a contract changes at the next bind, as carriers do).
        const c = {
          binds: Number(q.binds || 1),
          tps: Number(q.tps || 100),
          bound: 0,
          second: 0,
          inSecond: 0,
          busiest: 0,
          bindsRefused: 0,
          throttled: 0,
          accepted: 0,
        };
        state.contracts.set(q.account || 'county', c);
        return reply(res, 200, c);
      }
      case '/drop':
        dropAll();
        return reply(res, 200, { dropped: true });
      case '/drop-after':
        state.dropAfter = Number(q.count || 1);
        return reply(res, 200, { dropAfter: state.dropAfter });
      case '/drop-every':
        state.dropEvery = Number(q.count || 0);
        state.pdusSinceDrop = 0;
        return reply(res, 200, { dropEvery: state.dropEvery });
      case '/ids':
        state.ids = q.mode || 'plain';
        return reply(res, 200, { ids: state.ids });
      case '/late':
        state.late = { every: Number(q.every || 0), ms: Number(q.ms || 0) };
        return reply(res, 200, state.late);
      case '/mo-parts': {
        // A long reply from a phone in parts: how=udh8 | udh16 | sar; order=reverse sends the
        // last part first; skip=K leaves part K out (lost in the network).
        const s = firstSession();
        if (!s) return reply(res, 409, { error: 'no bound session' });
        const units = Buffer.from(q.text || '', 'utf16le').swap16();
        const total = Number(q.parts || 2);
        const per = Math.ceil(units.length / 2 / total) * 2;
        const ref = Number(q.ref || 0x2a);
        let order = [...Array(total).keys()].map((i) => i + 1);
        if (q.order === 'reverse') order = order.reverse();
        for (const seq of order) {
          if (Number(q.skip || 0) === seq) continue;
          const body = units.slice((seq - 1) * per, seq * per);
          const fields = {
            source_addr: q.from,
            destination_addr: q.to || '12379',
            esm_class: 0,
            data_coding: 8,
          };
          if (q.how === 'sar') {
            fields.short_message = body;
            fields.sar_msg_ref_num = ref;
            fields.sar_total_segments = total;
            fields.sar_segment_seqnum = seq;
          } else {
            const udh =
              q.how === 'udh16'
                ? Buffer.from([6, 0x08, 4, ref >> 8, ref & 0xff, total, seq])
                : Buffer.from([5, 0x00, 3, ref & 0xff, total, seq]);
            fields.esm_class = 0x40;
            fields.short_message = Buffer.concat([udh, body]);
          }
          state.mo++;
          sendDeliver(s, fields, 'mo', 0);
        }
        return reply(res, 200, { sent: true });
      }
      case '/refuse':
        state.refusing = q.on !== '0';
        if (state.refusing) dropAll();
        return reply(res, 200, { refusing: state.refusing });
      case '/invalid':
        state.invalid.add(q.number);
        return reply(res, 200, { invalid: [...state.invalid] });
      case '/undeliverable':
        state.undeliverable.add(q.number);
        return reply(res, 200, { undeliverable: [...state.undeliverable] });
      case '/mo': {
        const s = firstSession();
        if (!s) return reply(res, 409, { error: 'no bound session' });
        state.mo++;
        const ucs2 = /[^\x00-\x7f]/.test(q.text || '');
        sendDeliver(
          s,
          {
            source_addr: q.from,
            destination_addr: q.to || '12379',
            esm_class: 0,
            data_coding: ucs2 ? 8 : 0,
            short_message: q.text || '',
          },
          'mo',
          0
        );
        return reply(res, 200, { sent: true });
      }
      case '/receipt': {
        const s = firstSession();
        if (!s) return reply(res, 409, { error: 'no bound session' });
        sendDeliver(
          s,
          {
            source_addr: q.from || '8613800000000',
            destination_addr: '12379',
            esm_class: 4,
            short_message: `id:${q.id} sub:001 dlvrd:001 submit date:2601010000 done date:2601010000 stat:${q.stat || 'DELIVRD'} err:000 text:`,
          },
          'receipt',
          0
        );
        return reply(res, 200, { sent: true });
      }
      default:
        return reply(res, 404, { error: 'unknown command ' + url.pathname });
    }
  })
  .listen(controlPort, '127.0.0.1', function () {
    const control = this.address().port;
    smppReady.then(() => {
      process.stdout.write(`smpp 127.0.0.1:${server.address().port} control 127.0.0.1:${control}\n`);
    });
  });
