declare module 'parse-prometheus-text-format' {
  namespace parsePrometheusTextFormat {
    /** One sample of a counter, gauge or untyped family; values stay as written. */
    interface Sample {
      value: string;
      labels?: Record<string, string>;
    }
    /** One labelled histogram: cumulative bucket counts by their `le` bound. */
    interface HistogramSample {
      buckets: Record<string, string>;
      count: string;
      sum: string;
      labels?: Record<string, string>;
    }
    interface SummarySample {
      quantiles: Record<string, string>;
      count: string;
      sum: string;
      labels?: Record<string, string>;
    }
    interface MetricFamily {
      name: string;
      help: string;
      type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
      metrics: Array<Sample | HistogramSample | SummarySample>;
    }
  }
  function parsePrometheusTextFormat(text: string): parsePrometheusTextFormat.MetricFamily[];
  export = parsePrometheusTextFormat;
}
