package main

import (
	"testing"
	"time"
)

func TestChaosCheckClient(t *testing.T) {
	hist := []string{"1-0", "2-0", "3-0", "4-0", "5-0", "6-0"}
	at := time.UnixMilli(10)
	c := &chaos{faults: []fault{{kind: faultRedis, at: time.UnixMilli(3)}}}
	cases := []struct {
		name string
		log  []received
		want faultFigures // by the fault after entry 3
		pre  faultFigures // before any fault
		gone int
	}{
		{name: "every entry once", log: evs("2-0", "3-0", "4-0", "5-0", "6-0")},
		{name: "fresh start is not checked", log: evs("4-0", "5-0", "6-0")},
		{name: "skipped and not reached", log: evs("1-0", "2-0", "4-0"), want: faultFigures{Lost: 3}},
		{name: "repeated", log: evs("1-0", "2-0", "3-0", "3-0", "4-0", "5-0", "6-0"), want: faultFigures{Duplicates: 1}},
		{name: "gap at a held position, then all", log: append(evs("5-0"), append([]received{{gap: true, at: at}}, evs("1-0", "2-0", "3-0", "4-0", "5-0", "6-0")...)...),
			want: faultFigures{Gaps: 1}},
		{name: "gap Redis caused, then skips", log: append([]received{{id: "", gap: true, at: at}}, evs("2-0", "6-0")...),
			pre: faultFigures{Lost: 1}, want: faultFigures{Lost: 3}, gone: 1},
	}
	for _, tc := range cases {
		rep := &chaosReport{ByFault: map[string]*faultFigures{faultNone: {}, faultRedis: {}}}
		c.checkClient(rep, &chaosClient{log: tc.log}, hist)
		if *rep.ByFault[faultRedis] != tc.want || *rep.ByFault[faultNone] != tc.pre || rep.Gone != tc.gone {
			t.Errorf("%s: after the fault %+v, want %+v; before %+v, want %+v; gone %d, want %d",
				tc.name, *rep.ByFault[faultRedis], tc.want, *rep.ByFault[faultNone], tc.pre, rep.Gone, tc.gone)
		}
	}
}

func evs(ids ...string) []received {
	var out []received
	for _, id := range ids {
		out = append(out, received{id: id})
	}
	return out
}
