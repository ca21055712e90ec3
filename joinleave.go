package ginsse

import (
	"context"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Join and leave events are decided in Redis, by the presence script, so
// that every Sender agrees and each is decided once. Per channel the
// script keeps the users announced present: a user in a living Sender's
// roster and not announced gets ginsse-join; an announced user in no
// living roster is marked gone at that time, and gets ginsse-leave once
// gone for Options.PresenceGrace, unless back before. A reconnect, a
// rotation or a restart that brings the user back within the grace sends
// neither. A channel with a leave pending goes into a sorted set by due
// time, and the next script run past it — any Sender's, each runs every
// second — decides it, so a leave is sent even when the Sender that saw
// the user go is gone too.
//
// The Sender whose run decided an event publishes it to the channel like
// any event (a history event with History on, so a resume replays it).
const (
	joinEvent  = "ginsse-join"
	leaveEvent = "ginsse-leave"
)

// presenceEvent is a join or leave decided by the presence script.
type presenceEvent struct{ channel, typ, user string }

// presenceScript writes a Sender's changed rosters and its sign of life,
// removes the Senders silent for longer than the TTL, and with join and
// leave on decides the events of the channels concerned. It returns
// whether the sign of life was new, then the events, three fields each.
//
// A Sender's sign of life is the time, by Redis's clock, until which it
// counts as alive: now plus its own TTL, so that Senders configured with
// different TTLs judge each other by the TTL each gave.
//
// KEYS[1] the presence hash tag. ARGV: 1 Sender id, 2 TTL (ms), 3 grace
// (ms), 4 keep (ms), 5 join and leave ("1"), 6 the number of rosters,
// then each roster's channel and roster ("": none).
var presenceScript = redis.NewScript(luaNow + `
local tag = KEYS[1]
local id, ttl, grace, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local join, n = ARGV[5] == '1', tonumber(ARGV[6])
local alive, mine, due = tag .. ':alive', tag .. ':r:' .. id, tag .. ':due'
local isNew = redis.call('ZADD', alive, now + ttl, id)
redis.call('PEXPIRE', alive, keep)
local recheck, set, del = {}, {}, {}
for i = 7, 6 + 2 * n, 2 do
  local name, r = ARGV[i], ARGV[i + 1]
  if r == '' then
    table.insert(del, name)
  else
    table.insert(set, name)
    table.insert(set, r)
  end
  recheck[name] = true
end
for i = 1, #set, 1000 do redis.call('HSET', mine, unpack(set, i, math.min(i + 999, #set))) end
for i = 1, #del, 1000 do redis.call('HDEL', mine, unpack(del, i, math.min(i + 999, #del))) end
redis.call('PEXPIRE', mine, keep)
for _, d in ipairs(redis.call('ZRANGEBYSCORE', alive, '-inf', '(' .. now)) do
  if join then
    for _, name in ipairs(redis.call('HKEYS', tag .. ':r:' .. d)) do recheck[name] = true end
  end
  redis.call('DEL', tag .. ':r:' .. d)
  redis.call('ZREM', alive, d)
end
local out = {isNew}
if not join then return out end
for _, name in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now)) do
  recheck[name] = true
  redis.call('ZREM', due, name)
end
local live = redis.call('ZRANGE', alive, 0, -1)
for name in pairs(recheck) do
  local present = {}
  for _, l in ipairs(live) do
    local raw = redis.call('HGET', tag .. ':r:' .. l, name)
    if raw then
      local ok, r = pcall(cjson.decode, raw)
      if ok and type(r) == 'table' and type(r.u) == 'table' then
        for u in pairs(r.u) do present[u] = true end
      end
    end
  end
  local ukey, nextDue = tag .. ':u:' .. name, 0
  local announced = redis.call('HGETALL', ukey)
  local known = {}
  for i = 1, #announced, 2 do
    local u, v = announced[i], announced[i + 1]
    known[u] = true
    if present[u] then
      if v ~= 'here' then redis.call('HSET', ukey, u, 'here') end
    else
      local gone = now
      if v == 'here' then redis.call('HSET', ukey, u, now) else gone = tonumber(v) or now end
      if now - gone >= grace then
        redis.call('HDEL', ukey, u)
        table.insert(out, name)
        table.insert(out, '` + leaveEvent + `')
        table.insert(out, u)
      elseif nextDue == 0 or gone + grace < nextDue then
        nextDue = gone + grace
      end
    end
  end
  for u in pairs(present) do
    if not known[u] then
      redis.call('HSET', ukey, u, 'here')
      table.insert(out, name)
      table.insert(out, '` + joinEvent + `')
      table.insert(out, u)
    end
  end
  if nextDue > 0 then redis.call('ZADD', due, nextDue, name) end
  redis.call('PEXPIRE', ukey, keep)
end
redis.call('PEXPIRE', due, keep)
return out
`)

// withdrawScript takes a closing Sender's rosters and sign of life out;
// with join and leave (ARGV[2] is "1"), its channels are due at once, so
// that the next run decides its users' leaves.
var withdrawScript = redis.NewScript(luaNow + `
local mine = KEYS[1] .. ':r:' .. ARGV[1]
if ARGV[2] == '1' then
  for _, name in ipairs(redis.call('HKEYS', mine)) do redis.call('ZADD', KEYS[1] .. ':due', now, name) end
end
redis.call('DEL', mine)
redis.call('ZREM', KEYS[1] .. ':alive', ARGV[1])
return 1
`)

// readScript returns the rosters of a channel (ARGV[1]) of the Senders
// alive now.
var readScript = redis.NewScript(luaNow + `
local out = {}
for _, l in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1] .. ':alive', now, '+inf')) do
  local raw = redis.call('HGET', KEYS[1] .. ':r:' .. l, ARGV[1])
  if raw then table.insert(out, raw) end
end
return out
`)

// statsScript counts the streams and the distinct users on a channel
// (ARGV[1]) of the Senders alive now, in Redis, so that only two numbers
// come back.
var statsScript = redis.NewScript(luaNow + `
local streams, users, seen = 0, 0, {}
for _, l in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1] .. ':alive', now, '+inf')) do
  local raw = redis.call('HGET', KEYS[1] .. ':r:' .. l, ARGV[1])
  if raw then
    local ok, r = pcall(cjson.decode, raw)
    if ok and type(r) == 'table' then
      streams = streams + (tonumber(r.s) or 0)
      if type(r.u) == 'table' then
        for u in pairs(r.u) do
          if not seen[u] then
            seen[u] = true
            users = users + 1
          end
        end
      end
    end
  end
end
return {streams, users}
`)

// announce publishes the events the presence script decided, each to its
// channel, and returns once all are answered. They go out together, up to
// a pipeline's worth at a time, so that the batcher pipelines them: the
// joins of a cold start cost a few round trips, not one each. A run
// decides at most one event per user and channel, so their order within
// it does not matter. One that fails is lost, and logged.
func (p *presence) announce(events []presenceEvent) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxPipeline)
	for _, e := range events {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p.publishEvent(e)
		})
	}
	wg.Wait()
}

// publishEvent publishes e as Publish does, counted and stamped alike.
func (p *presence) publishEvent(e presenceEvent) {
	channel := Channel(strings.TrimPrefix(e.channel, p.s.opts.Prefix))
	if err := p.s.Publish(context.Background(), e.typ, map[string]string{"user": e.user}, channel); err != nil {
		p.s.log.Warn("ginsse: presence event lost", "event", e.typ, "user", e.user, "err", err)
	}
}

// withdrawArg is the withdraw script's second argument: "1" with join
// and leave on.
func (p *presence) withdrawArg() string {
	if !p.s.opts.JoinLeave {
		return ""
	}
	return "1"
}
