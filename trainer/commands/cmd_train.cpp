// deltashard train: the step loop around the Trainer, with progress, metrics, periodic evaluation
// and checkpoints, and a closing summary (one JSON object with --json; keys in docs/metrics.md).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "core/dir_layout.h"
#include "core/files.h"
#include "dist/mpi_env.h"
#include "trainer/comm_report.h"
#include "trainer/commands/cli.h"
#include "trainer/manifest.h"
#include "trainer/memory_model.h"
#include "trainer/metrics.h"
#include "trainer/stop_signals.h"
#include "trainer/trainer.h"

namespace ds {

namespace {
Json step_record(const StepResult& r) {
  Json j = Json::object();
  j["step"] = r.step + 1;
  j["loss"] = r.loss;
  j["lr"] = r.lr;
  j["tokens_per_s"] = r.ms > 0 ? r.tokens / (r.ms / 1000.0) : 0.0;
  j["grad_norm"] = r.grad_norm;
  j["skipped_steps"] = r.skipped_steps;
  if (r.loss_scale != 1.0 || r.scaler_skips > 0) {
    j["scaler_skips"] = r.scaler_skips;
    j["loss_scale"] = r.loss_scale;
  }
  j["step_ms"] = r.ms;
  j["tokens"] = r.tokens;
  j["counted_tokens"] = r.counted;
  j["comm"] = comm_json(r.comm);
  return j;
}
}  // namespace

int cmd_train(int argc, char** argv) {
  CommonArgs args;
  std::string out, resume;
  int64_t stop_after = -1;
  po::options_description desc("deltashard train");
  add_common(desc, args, true);
  desc.add_options()("out", po::value<std::string>(&out), "checkpoint directory (default: checkpoint.dir)")(
      "resume", po::value<std::string>(&resume),
      "continue from this checkpoint directory; auto: from the newest valid one in checkpoint.dir, or start "
      "fresh when there is none (a directory named auto: ./auto)")(
      "stop-after", po::value<int64_t>(&stop_after), "stop and checkpoint after this step (train.stop_after)");
  if (!parse_args(argc, argv, desc, args, true,
                  "deltashard train CONFIG [--set k=v] [--out DIR] [--resume DIR|auto] [--stop-after N] [--json]")) {
    return 0;
  }
  if (stop_after >= 0) args.overrides.push_back("train.stop_after=" + std::to_string(stop_after));

  RunConfig cfg = load_run_config(args.config, args.overrides);
  if (!cfg.campaign.empty()) {
    throw ConfigError(cfg.file + ": campaign: this config is a campaign of " + std::to_string(cfg.campaign.size()) +
                      " jobs; run it with deltashard campaign");
  }
  if (cfg.peft.method == PeftMethod::None) {
    throw ConfigError(cfg.file + ": peft.method: none trains nothing; train takes lora, adapter or full (eval and "
                      "generate take none)");
  }
  if (!out.empty()) cfg.checkpoint.dir = absolute_path(out);
  // Before the first collective: a preemption during setup is seen at the first step.
  install_stop_signals(cfg.train.stop_signals);
  ProcessGrid grid = make_grid(grid_options(cfg));
  if (resume == "auto") {
    if (cfg.checkpoint.dir.empty()) {
      throw UsageError("--resume auto: no checkpoint directory to resume from (set checkpoint.dir or --out)");
    }
    const bool rank0 = grid.world_rank == 0;
    const auto chosen = resume_auto(cfg.checkpoint.dir, [&](const std::string& m) {
      if (rank0) std::fprintf(stderr, "deltashard: warning: %s\n", m.c_str());
    });
    resume = chosen.value_or("");
    if (rank0 && !args.json) {
      std::printf("%s\n", chosen ? ("resuming from " + *chosen).c_str()
                                 : ("no checkpoint in " + cfg.checkpoint.dir + ": starting fresh").c_str());
    }
  }
  const LedgerScope whole_run(*grid.ledger);  // every collective of the run, for the closing totals
  // A run that cannot fit is refused before its output directory is claimed (Trainer checks again
  // for configs built in code).
  check_fits_memory(cfg, grid.dp);
  // Refuse an output path that is not ours before an hour of training, not after.
  if (!cfg.checkpoint.dir.empty() && grid.world_rank == 0) {
    if (!claim_output_dir(cfg.checkpoint.dir, DirKind::Checkpoints, out.empty() ? "checkpoint.dir" : "--out")) {
      write_marker(cfg.checkpoint.dir, DirKind::Checkpoints);
    }
  }
  grid.world->barrier("train.claim_output");
  TrainerOptions options{resume};
  options.cache_data = true;
  Trainer s(cfg, grid, options);
  const bool rank0 = grid.world_rank == 0;
  const auto& t = s.config().train;
  const ParamReport& rep = s.report();
  Progress progress(rank0 && !args.json);
  MetricsLog metrics(s.config().log.jsonl, rank0);

  if (rank0 && !args.json) {
    std::printf("deltashard train %s | method %s | %s on %s | world %d = dp %d x tp %d | %s trainable of %s params "
                "(%.3f%%)\n",
                args.config.c_str(), enum_name(s.config().peft.method), enum_name(s.config().model.dtype),
                enum_name(s.config().train.device), grid.world_size, grid.dp, grid.tp,
                human_count(rep.trainable_params).c_str(), human_count(rep.total_params).c_str(),
                100.0 * rep.trainable_params / std::max<int64_t>(1, rep.total_params));
    if (const SftDataset* d = s.sft()) {
      const SftStats& st = d->stats();
      std::printf("data: %zu files, %lld examples (%lld held out), %lld tokens, %lld counted, %lld dropped, %lld "
                  "truncated | global batch %lld x %lld tokens\n",
                  d->files().size(), static_cast<long long>(st.examples), static_cast<long long>(st.val_examples),
                  static_cast<long long>(st.tokens), static_cast<long long>(st.counted),
                  static_cast<long long>(st.dropped), static_cast<long long>(st.truncated),
                  static_cast<long long>(t.micro_batch * grid.dp * t.grad_accum), static_cast<long long>(t.seq_len));
    } else {
      std::printf("data: %zu files, %s train / %s held-out tokens | global batch %lld x %lld tokens\n",
                  s.data().files().size(), human_count(s.data().train_tokens()).c_str(),
                  human_count(s.data().val_tokens()).c_str(),
                  static_cast<long long>(t.micro_batch * grid.dp * t.grad_accum), static_cast<long long>(t.seq_len));
    }
    std::fflush(stdout);
  }

  auto eval_and_log = [&](const char* label) {
    const EvalResult e = s.evaluate();
    Json j = Json::object();
    j["step"] = s.step_index();
    j["eval_loss"] = e.loss;
    j["perplexity"] = e.perplexity;
    j["eval_tokens"] = e.tokens;
    metrics.write(j);
    char line[160];
    std::snprintf(line, sizeof line, "eval %-6s step %lld: loss %.4f  ppl %.2f  (%lld tokens)", label,
                  static_cast<long long>(s.step_index()), e.loss, e.perplexity, static_cast<long long>(e.tokens));
    progress.update(line, true);
    return e;
  };

  const EvalResult before = eval_and_log("before");
  const int64_t first_step = s.step_index();
  double tokens = 0;
  std::vector<double> step_ms, comm_ms;
  CommTotals dp_per_step, tp_per_step;
  int64_t counted = 0, skipped_steps = 0;
  // Saves the state at the current step and says where, for the runs that end early.
  auto save_now = [&]() -> std::string {
    if (s.config().checkpoint.dir.empty()) return "no checkpoint.dir: nothing was saved";
    s.save_checkpoint(s.config().checkpoint.dir);
    return "checkpoint " + s.config().checkpoint.dir + "/" + step_dir_name(s.step_index());
  };
  while (!s.done()) {
    const StepResult r = s.step();
    skipped_steps = r.skipped_steps;
    metrics.write(step_record(r));
    tokens += static_cast<double>(r.tokens);
    step_ms.push_back(r.ms);
    const StepComm c = step_comm(r.comm, s.config().model.n_layer);
    comm_ms.push_back(c.comm_ms);
    dp_per_step.calls += c.dp_collectives;
    dp_per_step.bytes += c.dp_bytes;
    tp_per_step.calls += c.tp_fwd + c.tp_bwd + c.tp_recompute;  // a recomputed forward repeats its collectives
    tp_per_step.bytes += c.tp_bytes;
    ++counted;
    const int64_t done = s.step_index();
    char line[200];
    std::snprintf(line, sizeof line, "step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  %.0f ms/step  comm %.1f ms",
                  static_cast<long long>(done), static_cast<long long>(t.steps), r.loss, r.lr,
                  r.tokens / (r.ms / 1000.0), r.ms, c.comm_ms);
    progress.update(line, done % s.config().log.every == 0 || done == t.steps);
    if (r.fatal) {
      progress.finish();
      const std::string where = save_now();
      throw std::runtime_error("step " + std::to_string(r.step + 1) + ": the loss or gradient norm is not finite (" +
                               (t.nonfinite == NonFinite::Stop
                                    ? std::string("train.nonfinite: stop")
                                    : std::to_string(t.max_skipped + 1) + " skipped in a row, more than train.max_skipped " +
                                          std::to_string(t.max_skipped)) +
                               "); the last good state: " + where);
    }
    const bool stop_after_here = t.stop_after > 0 && done == t.stop_after;
    if ((r.stop || stop_after_here) && done < t.steps) {
      progress.finish();
      const std::string where = save_now();
      if (rank0) {
        const std::string why = r.stop ? (stop_signal() ? "by " + signal_name(stop_signal()) : "by a stop signal on another rank")
                                       : "at train.stop_after";
        std::fprintf(stderr, "deltashard: stopped %s after step %lld of %lld; %s (continue with --resume auto)\n",
                     why.c_str(), static_cast<long long>(done), static_cast<long long>(t.steps), where.c_str());
        std::fflush(stderr);
      }
      return stopped_exit(rank0);
    }
    if (t.eval_every > 0 && done % t.eval_every == 0 && done != t.steps) eval_and_log("");
    if (s.config().checkpoint.every > 0 && done % s.config().checkpoint.every == 0 && done != t.steps &&
        !s.config().checkpoint.dir.empty()) {
      s.save_checkpoint(s.config().checkpoint.dir);
    }
  }
  progress.finish();
  const EvalResult after = eval_and_log("after");
  if (!s.config().checkpoint.dir.empty()) s.save_checkpoint(s.config().checkpoint.dir);

  const StepTimes times = step_times(step_ms, comm_ms);
  if (!rank0) return 0;
  const double median_ms = times.step_ms;
  const double tok_s = counted > 0 && median_ms > 0 ? tokens / static_cast<double>(counted) / (median_ms / 1000.0) : 0;
  const double n = std::max<int64_t>(1, counted);
  // What full fine-tuning would all-reduce per step: every parameter's fp32 gradient once
  // (computed from the exact parameter count, not measured).
  const double full_ft_bytes = 4.0 * static_cast<double>(rep.total_params);
  Json j = Json::object();
  j["method"] = enum_name(s.config().peft.method);
  j["dtype"] = enum_name(s.config().model.dtype);
  j["device"] = enum_name(s.config().train.device);
  j["world_size"] = grid.world_size;
  j["dp"] = grid.dp;
  j["tp"] = grid.tp;
  j["steps"] = s.step_index() - first_step;
  j["skipped_steps"] = skipped_steps;
  j["eval_loss_before"] = before.loss;
  j["eval_loss_after"] = after.loss;
  j["perplexity_after"] = after.perplexity;
  j["total_params"] = rep.total_params;
  j["trainable_params"] = rep.trainable_params;
  j["tokens_per_s"] = tok_s;
  j["step_ms"] = median_ms;
  j["comm_fraction"] = times.comm_fraction;
  j["dp_collectives_per_step"] = dp_per_step.calls / n;
  j["dp_bytes_per_step"] = dp_per_step.bytes / n;
  j["tp_collectives_per_step"] = tp_per_step.calls / n;
  j["tp_bytes_per_step"] = tp_per_step.bytes / n;
  j["full_ft_dp_bytes_per_step_computed"] = full_ft_bytes;
  j["checkpoint"] = s.config().checkpoint.dir;
  // The whole run on rank 0 (setup, steps, evaluations, checkpoints), per communicator and
  // operation, in the ledger's payload bytes: what tests/monitoring_check.sh holds against Open
  // MPI's own per-communicator accounting.
  Json run = Json::object();
  const std::vector<CommRecord> records = whole_run.records();
  for (const char* g : {"world", "tp", "dp"}) {
    std::map<std::string, CommTotals> by_op;
    CommTotals tot;
    int group_size = 1;
    for (const auto& r : records) {
      if (r.group != g) continue;
      by_op[r.op].add(r);
      tot.add(r);
      group_size = r.group_size;
    }
    Json gj = Json::object();
    gj["collectives"] = tot.calls;
    gj["bytes"] = tot.bytes;
    gj["group_size"] = group_size;
    Json ops = Json::object();
    for (const auto& [op, t] : by_op) {
      Json oj = Json::object();
      oj["calls"] = t.calls;
      oj["bytes"] = t.bytes;
      ops[op] = oj;
    }
    gj["by_op"] = ops;
    run[g] = gj;
  }
  j["run_comm"] = run;
  if (args.json) {
    std::printf("%s\n", json_line(j).c_str());
    return 0;
  }
  std::printf("\nsummary\n");
  std::printf("  eval loss on held-out text: %.4f before -> %.4f after (perplexity %.2f -> %.2f)\n", before.loss,
              after.loss, before.perplexity, after.perplexity);
  std::printf("  trainable parameters: %lld of %lld (%.3f%%), %s of trainable tensors\n",
              static_cast<long long>(rep.trainable_params), static_cast<long long>(rep.total_params),
              100.0 * rep.trainable_params / std::max<int64_t>(1, rep.total_params),
              human_bytes(static_cast<double>(rep.trainable_bytes)).c_str());
  std::printf("  throughput: %.0f tokens/s over %lld steps (median step %.1f ms)\n", tok_s,
              static_cast<long long>(counted), median_ms);
  std::printf("  communication per step (measured by the ledger): dp group %.1f collectives, %s; tp group %.1f collectives, %s\n",
              dp_per_step.calls / n, human_bytes(dp_per_step.bytes / n).c_str(), tp_per_step.calls / n,
              human_bytes(tp_per_step.bytes / n).c_str());
  if (grid.dp > 1) {
    std::printf("  full fine-tuning of this model would all-reduce %s of fp32 gradients per step over dp "
                "(computed: 4 bytes x %lld parameters), %.0fx the gradient bytes above\n",
                human_bytes(full_ft_bytes).c_str(), static_cast<long long>(rep.total_params),
                full_ft_bytes / std::max(1.0, 4.0 * static_cast<double>(rep.trainable_params)));
  }
  if (!s.config().checkpoint.dir.empty()) std::printf("  checkpoint: %s\n", s.config().checkpoint.dir.c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace ds
