// SPDX-License-Identifier: Apache-2.0
//
// The policy benchmark: how long a large policy takes to load, and how many
// decisions per second one thread gets from the engine for HTTP requests,
// TLS ClientHellos and DNS queries. The workload (bench/policy_workload.h)
// is a generated 1,000-rule policy and a mix of requests over it.
//
// Before measuring, every HTTP probe is checked against the rule it must
// hit: a benchmark of wrong decisions would be worthless. A mismatch is
// reported and makes the program exit 1 after the measurements.
//
// Targets: load well under 50 ms, at least 1,000,000 HTTP decisions/s.
// Google Benchmark flags (--benchmark_filter=..., --benchmark_min_time=...)
// work as usual; the summary at the end is plain text for CI logs.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/policy_workload.h"
#include "policy/policy.h"

namespace {

constexpr size_t kRuleCount = 1000;
// Distinct probes of each kind: enough to defeat branch predictors and
// caches learning one request, few enough to stay in memory cheaply.
constexpr size_t kProbeCount = 4096;

const gvm::bench::Workload &workload()
{
	static const gvm::bench::Workload instance = gvm::bench::makeWorkload(kRuleCount, kProbeCount);
	return instance;
}

std::shared_ptr<const gvm::policy::Engine> loadEngine()
{
	const gvm::bench::Workload &w = workload();
	gvm::policy::LoadResult result = gvm::policy::loadPolicy(w.policyText, "bench.yaml");
	for (const gvm::policy::Diagnostic &diagnostic : result.diagnostics)
		std::cerr << diagnostic.toString() << "\n";
	return result.engine;
}

const std::shared_ptr<const gvm::policy::Engine> &engine()
{
	static const std::shared_ptr<const gvm::policy::Engine> instance = loadEngine();
	return instance;
}

void loadPolicy(benchmark::State &state)
{
	const std::string &text = workload().policyText;
	for (auto _ : state) {
		gvm::policy::LoadResult result = gvm::policy::loadPolicy(text, "bench.yaml");
		benchmark::DoNotOptimize(result.engine);
		if (!result.engine) {
			state.SkipWithError("the generated policy does not load");
			break;
		}
	}
	state.counters["rules"] = static_cast<double>(kRuleCount);
	state.counters["bytes"] = static_cast<double>(text.size());
}
BENCHMARK(loadPolicy)->Name("policy/load")->Unit(benchmark::kMillisecond);

void evaluateHttp(benchmark::State &state)
{
	const gvm::policy::Engine &e = *engine();
	const std::vector<gvm::bench::HttpProbe> &probes = workload().http;
	size_t k = 0;
	for (auto _ : state) {
		gvm::policy::Decision decision = e.evaluateHttp(probes[k].request);
		benchmark::DoNotOptimize(decision);
		if (++k == probes.size())
			k = 0;
	}
	state.SetItemsProcessed(state.iterations());
}
BENCHMARK(evaluateHttp)->Name("policy/evaluate_http");

void evaluateTls(benchmark::State &state)
{
	const gvm::policy::Engine &e = *engine();
	const std::vector<gvm::bench::TlsProbe> &probes = workload().tls;
	size_t k = 0;
	for (auto _ : state) {
		gvm::policy::Decision decision = e.evaluateTls(probes[k].sni, probes[k].port);
		benchmark::DoNotOptimize(decision);
		if (++k == probes.size())
			k = 0;
	}
	state.SetItemsProcessed(state.iterations());
}
BENCHMARK(evaluateTls)->Name("policy/evaluate_tls");

void evaluateDns(benchmark::State &state)
{
	const gvm::policy::Engine &e = *engine();
	const std::vector<gvm::bench::DnsProbe> &probes = workload().dns;
	size_t k = 0;
	for (auto _ : state) {
		gvm::policy::Decision decision = e.evaluateDns(probes[k].name, probes[k].qtype);
		benchmark::DoNotOptimize(decision);
		if (++k == probes.size())
			k = 0;
	}
	state.SetItemsProcessed(state.iterations());
}
BENCHMARK(evaluateDns)->Name("policy/evaluate_dns");

// Checks every HTTP probe's decision against the rule it must hit; prints
// the first few mismatches and the mix of actions. Returns the mismatches.
size_t checkWorkload(const gvm::policy::Engine &e)
{
	size_t mismatches = 0;
	std::map<std::string, size_t> actions;
	size_t defaults = 0;
	for (const gvm::bench::HttpProbe &probe : workload().http) {
		gvm::policy::Decision decision = e.evaluateHttp(probe.request);
		actions[gvm::policy::toString(decision.action)]++;
		defaults += decision.ruleIndex < 0;
		if (decision.rule == probe.expectedRule)
			continue;
		if (++mismatches <= 10)
			std::cerr << "mismatch: " << probe.request.method << " " << probe.request.host << ":"
				  << probe.request.port << probe.request.path
				  << (probe.request.query.empty() ? "" : "?") << probe.request.query << ": expected rule '"
				  << probe.expectedRule << "', got '" << decision.rule << "' (" << decision.reason << ")\n";
	}

	std::cout << "workload: " << e.ruleCount() << " rules, " << workload().policyText.size() << " bytes of YAML, "
		  << workload().http.size() << " distinct HTTP requests (";
	for (const auto &[action, count] : actions)
		std::cout << action << " " << count << ", ";
	std::cout << "default " << defaults << ")\n";
	return mismatches;
}

// Keeps the console output and remembers each benchmark's figures for the
// summary.
class SummaryReporter : public benchmark::ConsoleReporter
{
public:
	SummaryReporter()
		: benchmark::ConsoleReporter(OO_Tabular)
	{
	}

	void ReportRuns(const std::vector<Run> &reports) override
	{
		benchmark::ConsoleReporter::ReportRuns(reports);
		for (const Run &run : reports) {
			if (run.error_occurred || run.run_type != Run::RT_Iteration)
				continue;
			Figures &figures = figures_[run.run_name.str()];
			figures.time = run.GetAdjustedRealTime();
			figures.unit = run.time_unit;
			auto rate = run.counters.find("items_per_second");
			if (rate != run.counters.end())
				figures.perSecond = rate->second.value;
		}
	}

	// Milliseconds per iteration, or a negative value when not measured.
	double milliseconds(const std::string &name) const
	{
		auto it = figures_.find(name);
		if (it == figures_.end())
			return -1;
		return it->second.time * 1e3 / benchmark::GetTimeUnitMultiplier(it->second.unit);
	}

	double perSecond(const std::string &name) const
	{
		auto it = figures_.find(name);
		return it == figures_.end() ? -1 : it->second.perSecond;
	}

private:
	struct Figures {
		double time = 0;
		benchmark::TimeUnit unit = benchmark::kNanosecond;
		double perSecond = 0;
	};
	std::map<std::string, Figures> figures_;
};

void printRate(const char *label, double perSecond)
{
	if (perSecond < 0)
		std::printf("%s: not measured\n", label);
	else
		std::printf("%s: %.2e\n", label, perSecond);
}

} // namespace

int main(int argc, char **argv)
{
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;

	if (!engine()) {
		std::cerr << "policy-bench: the generated policy does not load\n";
		return 1;
	}
	size_t mismatches = checkWorkload(*engine());

	SummaryReporter reporter;
	benchmark::RunSpecifiedBenchmarks(&reporter);
	benchmark::Shutdown();

	std::printf("\n");
	double loadMs = reporter.milliseconds("policy/load");
	if (loadMs < 0)
		std::printf("policy load (%zu rules): not measured\n", kRuleCount);
	else
		std::printf("policy load (%zu rules): %.1f ms\n", kRuleCount, loadMs);
	printRate("http decisions/s", reporter.perSecond("policy/evaluate_http"));
	printRate("tls decisions/s", reporter.perSecond("policy/evaluate_tls"));
	printRate("dns decisions/s", reporter.perSecond("policy/evaluate_dns"));
	if (mismatches) {
		std::printf("%zu of %zu HTTP requests got the wrong rule\n", mismatches, workload().http.size());
		return 1;
	}
	return 0;
}
