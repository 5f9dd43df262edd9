// promparse reads Prometheus' text exposition format on stdin with Prometheus'
// own parser (github.com/prometheus/common/expfmt) and prints the metric
// families as JSON: the tests check the plugin's /metrics the way Prometheus
// reads it. A text Prometheus would refuse exits 1 with the parser's error.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

type metric struct {
	Labels  map[string]string  `json:"labels"`
	Value   *float64           `json:"value,omitempty"`
	Count   *uint64            `json:"count,omitempty"`
	Sum     *float64           `json:"sum,omitempty"`
	Buckets map[string]float64 `json:"buckets,omitempty"`
}

type family struct {
	Name    string   `json:"name"`
	Help    string   `json:"help"`
	Type    string   `json:"type"`
	Metrics []metric `json:"metrics"`
}

func main() {
	var parser expfmt.TextParser
	fams, err := parser.TextToMetricFamilies(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]family, 0, len(fams))
	for _, n := range names {
		f := fams[n]
		fam := family{Name: f.GetName(), Help: f.GetHelp(), Type: f.GetType().String()}
		for _, m := range f.GetMetric() {
			x := metric{Labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				x.Labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v := m.GetCounter().GetValue()
				x.Value = &v
			case dto.MetricType_GAUGE:
				v := m.GetGauge().GetValue()
				x.Value = &v
			case dto.MetricType_UNTYPED:
				v := m.GetUntyped().GetValue()
				x.Value = &v
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				c, s := h.GetSampleCount(), h.GetSampleSum()
				x.Count, x.Sum = &c, &s
				x.Buckets = map[string]float64{}
				for _, b := range h.GetBucket() {
					x.Buckets[strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)] = float64(b.GetCumulativeCount())
				}
			case dto.MetricType_SUMMARY:
				sm := m.GetSummary()
				c, s := sm.GetSampleCount(), sm.GetSampleSum()
				x.Count, x.Sum = &c, &s
			}
			fam.Metrics = append(fam.Metrics, x)
		}
		out = append(out, fam)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
