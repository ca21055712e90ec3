// Follows one event stream with the npm eventsource package, the client
// Node.js applications use, and prints what it sees as JSON lines for the
// Go test that started it: {"event", "data", "id"} for each event, and
// {"state", "why"} for each open and error. It exits when its standard
// input closes.
import { EventSource } from 'eventsource';

const states = ['connecting', 'open', 'closed'];
const print = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const es = new EventSource(process.argv[2]);
const onEvent = (e) => print({ event: e.type, data: e.data, id: e.lastEventId });

es.onopen = () => print({ state: states[es.readyState] });
es.onerror = (e) => print({ state: es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting', why: `${e.code ?? ''} ${e.message ?? ''}`.trim() });
es.onmessage = onEvent;
es.addEventListener('ginsse-gap', onEvent);
// As a page should: a ginsse-disconnect asks the client not to come back.
es.addEventListener('ginsse-disconnect', (e) => {
  onEvent(e);
  es.close();
  print({ state: 'closed', why: 'ginsse-disconnect' });
});

process.stdin.on('end', () => { es.close(); process.exit(0); });
process.stdin.resume();
