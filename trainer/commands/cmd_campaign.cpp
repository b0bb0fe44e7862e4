// deltashard campaign: the step loop around a Campaign (trainer/campaign.h), with per-job metrics
// records, evaluations and checkpoints (DIR/jobs/NAME, with its PEFT export in DIR/jobs/NAME/peft)
// and a closing table of the jobs' final held-out losses, the lowest marked best.
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/dir_layout.h"
#include "core/files.h"
#include "trainer/campaign.h"
#include "trainer/comm_report.h"
#include "trainer/commands/cli.h"
#include "trainer/manifest.h"
#include "trainer/memory_model.h"
#include "trainer/metrics.h"
#include "trainer/stop_signals.h"

namespace ds {

namespace {
Json job_record(const std::string& name, const JobStepResult& r, double ms) {
  Json j = Json::object();
  j["job"] = name;
  j["step"] = r.step + 1;
  j["loss"] = r.loss;
  j["lr"] = r.lr;
  j["grad_norm"] = r.grad_norm;
  j["skipped"] = r.skipped;
  j["tokens"] = r.tokens;
  j["counted_tokens"] = r.counted;
  j["step_ms"] = ms;
  return j;
}
}  // namespace

int cmd_campaign(int argc, char** argv) {
  CommonArgs args;
  std::string out, resume;
  po::options_description desc("deltashard campaign");
  add_common(desc, args, true);
  desc.add_options()("out", po::value<std::string>(&out), "campaign directory (default: checkpoint.dir)")(
      "resume", po::value<std::string>(&resume),
      "auto: continue from the campaign's last checkpoint in checkpoint.dir, or start fresh when there is none");
  if (!parse_args(argc, argv, desc, args, true, "deltashard campaign CONFIG [--set k=v] [--out DIR] [--resume auto] [--json]")) {
    return 0;
  }
  RunConfig cfg = load_run_config(args.config, args.overrides);
  if (cfg.campaign.empty()) {
    throw ConfigError(cfg.file + ": campaign: no jobs; a campaign config lists them under campaign: or "
                                 "campaign_sweep: (deltashard train runs one)");
  }
  if (!out.empty()) cfg.checkpoint.dir = absolute_path(out);
  install_stop_signals(cfg.train.stop_signals);
  ProcessGrid grid = make_grid(grid_options(cfg));
  const bool rank0 = grid.world_rank == 0;
  if (!resume.empty() && resume != "auto") throw UsageError("--resume: campaigns take auto (the campaign directory)");
  if (resume == "auto") {
    if (cfg.checkpoint.dir.empty()) {
      throw UsageError("--resume auto: no campaign directory to resume from (set checkpoint.dir or --out)");
    }
    resume = campaign_checkpoint_step(cfg.checkpoint.dir, cfg) ? cfg.checkpoint.dir : "";
    if (rank0 && !args.json) {
      std::printf("%s\n", resume.empty() ? ("no campaign checkpoint in " + cfg.checkpoint.dir + ": starting fresh").c_str()
                                         : ("resuming from " + cfg.checkpoint.dir).c_str());
    }
  }
  // A campaign that cannot fit is refused before its directory is claimed (Campaign checks again).
  check_fits_memory(cfg, grid.dp);
  if (!cfg.checkpoint.dir.empty() && rank0) {
    if (!claim_output_dir(cfg.checkpoint.dir, DirKind::Checkpoints, out.empty() ? "checkpoint.dir" : "--out")) {
      write_marker(cfg.checkpoint.dir, DirKind::Checkpoints);
    }
  }
  grid.world->barrier("campaign.claim_output");
  Campaign c(cfg, grid, resume);
  const RunConfig& rc = c.config();
  const size_t J = c.num_jobs();
  Progress progress(rank0 && !args.json);
  MetricsLog metrics(rc.log.jsonl, rank0);
  if (rank0 && !args.json) {
    std::printf("deltashard campaign %s | %zu LoRA jobs on one %s base | world %d = dp %d x tp %d\n",
                args.config.c_str(), J, enum_name(rc.model.dtype), grid.world_size, grid.dp, grid.tp);
    for (size_t j = 0; j < J; ++j) {
      const RunConfig& jc = c.job(j).cfg;
      std::printf("  %-24s r %-3lld targets [%s]  lr %.2e  steps %lld  micro batch %lld\n", c.job(j).name.c_str(),
                  static_cast<long long>(jc.peft.r), join_choices(jc.peft.targets, ", ").c_str(), jc.train.lr,
                  static_cast<long long>(jc.train.steps), static_cast<long long>(jc.train.micro_batch));
    }
    std::fflush(stdout);
  }
  std::vector<EvalResult> last(J);
  auto eval_job = [&](size_t j, const char* label) {
    last[j] = c.evaluate(j);
    Json r = Json::object();
    r["job"] = c.job(j).name;
    r["step"] = c.job(j).step;
    r["eval_loss"] = last[j].loss;
    r["perplexity"] = last[j].perplexity;
    r["eval_tokens"] = last[j].tokens;
    metrics.write(r);
    char line[200];
    std::snprintf(line, sizeof line, "eval %-6s %s step %lld: loss %.4f  ppl %.2f", label, c.job(j).name.c_str(),
                  static_cast<long long>(c.job(j).step), last[j].loss, last[j].perplexity);
    progress.update(line, true);
  };
  auto save_now = [&]() -> std::string {
    if (rc.checkpoint.dir.empty()) return "no checkpoint.dir: nothing was saved";
    c.save_checkpoint(rc.checkpoint.dir);
    return "campaign checkpoint " + rc.checkpoint.dir + " at step " + std::to_string(c.step_index());
  };
  const int64_t first_step = c.step_index();
  double tokens = 0;
  std::vector<double> step_ms;
  while (!c.done()) {
    const CampaignStepResult r = c.step();
    tokens += static_cast<double>(r.tokens);
    step_ms.push_back(r.ms);
    std::string line = "step " + std::to_string(c.step_index());
    for (size_t j = 0; j < J; ++j) {
      if (!r.jobs[j].active) continue;
      metrics.write(job_record(c.job(j).name, r.jobs[j], r.ms));
      char part[96];
      std::snprintf(part, sizeof part, "  %s %.4f", c.job(j).name.c_str(), r.jobs[j].loss);
      line += part;
    }
    progress.update(line, c.step_index() % rc.log.every == 0 || c.done());
    if (r.fatal) {
      progress.finish();
      const std::string where = save_now();
      throw std::runtime_error("campaign step " + std::to_string(r.step + 1) +
                               ": a job's loss or gradient norm is not finite past train.max_skipped (or "
                               "train.nonfinite: stop); the last good state: " + where);
    }
    const bool stop_after_here = rc.train.stop_after > 0 && c.step_index() == rc.train.stop_after;
    if ((r.stop || stop_after_here) && !c.done()) {
      progress.finish();
      const std::string where = save_now();
      if (rank0) {
        std::fprintf(stderr, "deltashard: campaign stopped %s after step %lld; %s (continue with --resume auto)\n",
                     r.stop ? "by a stop signal" : "at train.stop_after", static_cast<long long>(c.step_index()),
                     where.c_str());
        std::fflush(stderr);
      }
      return stopped_exit(rank0);
    }
    for (size_t j = 0; j < J; ++j) {
      // A job that has just finished is evaluated once; the others every eval_every steps.
      const int64_t s = c.job(j).step;
      const bool finished_now = r.jobs[j].active && c.job(j).done();
      if (r.jobs[j].active && (finished_now || (rc.train.eval_every > 0 && s % rc.train.eval_every == 0))) {
        eval_job(j, finished_now ? "final" : "");
      }
    }
    if (rc.checkpoint.every > 0 && c.step_index() % rc.checkpoint.every == 0 && !c.done() && !rc.checkpoint.dir.empty()) {
      c.save_checkpoint(rc.checkpoint.dir);
    }
  }
  progress.finish();
  // Resumed after every job had finished, or jobs of 0 steps: their final figures now.
  for (size_t j = 0; j < J; ++j) {
    if (last[j].tokens == 0) eval_job(j, "final");
  }
  if (!rc.checkpoint.dir.empty()) {
    c.save_checkpoint(rc.checkpoint.dir);
    for (size_t j = 0; j < J; ++j) {
      const std::string root = rc.checkpoint.dir + "/jobs/" + c.job(j).name;
      write_peft_export(resolve_checkpoint(root), root + "/peft");
    }
  }
  if (!rank0) return 0;
  size_t best = 0;
  for (size_t j = 1; j < J; ++j) {
    if (last[j].loss < last[best].loss) best = j;
  }
  const double ms = median(step_ms);
  const int64_t steps = c.step_index() - first_step;
  Json jobs = Json::array();
  for (size_t j = 0; j < J; ++j) {
    Json x = Json::object();
    x["job"] = c.job(j).name;
    x["steps"] = c.job(j).step;
    x["eval_loss"] = last[j].loss;
    x["perplexity"] = last[j].perplexity;
    x["best"] = j == best;
    jobs.push_back(x);
  }
  Json s = Json::object();
  s["jobs"] = jobs;
  s["best"] = c.job(best).name;
  s["steps"] = steps;
  s["tokens_per_s"] = ms > 0 && steps > 0 ? tokens / static_cast<double>(steps) / (ms / 1000.0) : 0.0;
  s["step_ms"] = ms;
  s["checkpoint"] = rc.checkpoint.dir;
  metrics.write(s);
  if (args.json) {
    std::printf("%s\n", json_line(s).c_str());
    return 0;
  }
  std::printf("\ncampaign summary (final held-out loss per job)\n");
  std::printf("  %-24s %6s %12s %12s\n", "job", "steps", "eval loss", "perplexity");
  for (size_t j = 0; j < J; ++j) {
    std::printf("  %-24s %6lld %12.4f %12.2f%s\n", c.job(j).name.c_str(), static_cast<long long>(c.job(j).step),
                last[j].loss, last[j].perplexity, j == best ? "  <- best" : "");
  }
  std::printf("  throughput: %.0f tokens/s over %lld steps (median step %.1f ms)\n", s["tokens_per_s"].get<double>(),
              static_cast<long long>(steps), ms);
  if (!rc.checkpoint.dir.empty()) std::printf("  checkpoints: %s/jobs/NAME (PEFT adapters in NAME/peft)\n", rc.checkpoint.dir.c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace ds
