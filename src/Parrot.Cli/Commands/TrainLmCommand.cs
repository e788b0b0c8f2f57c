using System.CommandLine;
using Parrot.Nn.Models.Qwen2;
using System.Text.Json.Nodes;
using Parrot.Parrot.Data;
using Parrot.Parrot.Text;
using Parrot.Parrot.Training;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Cli;

/// <summary>
/// `parrot train-lm --model DIR --tokens FILE.jsonl --steps N --batch B --lr LR [--weight-decay WD]
/// [--warmup-steps W] [--max-grad-norm G] [--seed S] [--shuffle] --log FILE.jsonl [--out DIR]`:
/// fine-tunes a Qwen2 checkpoint directory as a causal LM (the contract of the [autograd] issue); --out may not be the
/// --model folder (refused before any work: the checkpoint would be overwritten).
/// Pre-training additions: <c>--init CONFIG.json</c> starts from fresh weights (drawn with --seed) instead of
/// --model; <c>--text FILE.jsonl --seq-len N</c> reads documents <c>{"text": ...}</c> instead of --tokens
/// (tokenized with --tokenizer or the model's tokenizer.json, each ended by &lt;|endoftext|&gt;, cut into
/// windows); <c>--valid-windows N</c> holds out the last windows; <c>--schedule cosine</c>; <c>--out-dtype</c>.
/// </summary>
internal static class TrainLmCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Qwen2/Qwen1.5 model directory (config.json + safetensors); or give --init" };
        var init = new Option<string?>("--init") { Description = "Start from fresh weights (seeded by --seed) of this Qwen2 config.json instead of --model; vocab_size may be left out (the tokenizer's size) and eos_token_id defaults to <|im_end|>, <|endoftext|>" };
        var tokens = new Option<string?>("--tokens") { Description = "JSON lines {\"ids\": [...]}, all of one length; or give --text" };
        var text = new Option<string?>("--text") { Description = "JSON lines {\"text\": ...} (e.g. a world's text/lm.jsonl): tokenized, each document followed by <|endoftext|>, concatenated and cut into --seq-len windows" };
        var specials = new Option<bool>("--special-tokens") { Description = "With --text: special tokens written in the text (<|im_start|>, <|im_end|>, …) are their control ids, as ChatML documents (make-world --text-format chatml) need; by default text is text" };
        var seqLen = new Option<int?>("--seq-len") { Description = "Tokens per window with --text" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer.json for --text (default: --model's); written to --out" };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps", Required = true };
        var batch = new Option<int>("--batch") { Description = "Sequences per step", Required = true };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate, reached after the warm-up (then constant, or decayed by --schedule cosine)", Required = true };
        var wd = new Option<double>("--weight-decay") { Description = "Decoupled weight decay on every parameter", DefaultValueFactory = _ => 0 };
        var warmup = new Option<int>("--warmup-steps") { Description = "Linear warm-up steps", DefaultValueFactory = _ => 0 };
        var clip = new Option<double?>("--max-grad-norm") { Description = "Clip the global gradient norm (default: no clipping)" };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the shuffle (and of the fresh weights with --init)", DefaultValueFactory = _ => 0UL };
        var shuffle = new Option<bool>("--shuffle") { Description = "Visit sequences in a seeded random order instead of file order" };
        var schedule = new Option<string>("--schedule") { Description = "constant (after the warm-up) or cosine (decay to 0 after the warm-up)", DefaultValueFactory = _ => "constant" };
        var valid = new Option<int>("--valid-windows") { Description = "Hold out the last N sequences; their mean loss is printed before and after training", DefaultValueFactory = _ => 0 };
        var log = new Option<string>("--log") { Description = "JSON lines written per step: step, loss, lr, grad_norm, world_size, zero", Required = true };
        var outDir = new Option<string?>("--out") { Description = "Write the trained checkpoint here, in the format it was read (float32 with --init), with the tokenizer and loss.png; not the --model folder" };
        var outDtype = new Option<string?>("--out-dtype") { Description = "f32 or bf16: the dtype of the written weights (default: the one read)" };
        var zero = DistributedCli.ZeroOption();
        var device = DeviceOption.Create();
        var cmd = new Command("train-lm", "Train a Qwen2 causal language model on token sequences or text (float32, AdamW): fine-tune a checkpoint, or pre-train from --init");
        foreach (var o in new Option[] { model, init, tokens, text, specials, seqLen, tokenizer, steps, batch, lr, wd, warmup, clip, seed, shuffle, schedule, valid, log, outDir, outDtype, zero, device }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("train-lm", () =>
        {
            var dev = DistributedCli.ResolveDevice(p.GetValue(device), "train-lm");
            int n = p.GetValue(steps), b = p.GetValue(batch);
            double rate = p.GetValue(lr);
            if (n <= 0) throw new CliException($"--steps must be positive, got {n}");
            if (b <= 0) throw new CliException($"--batch must be positive, got {b}");
            if (!(rate >= 0) || double.IsInfinity(rate)) throw new CliException($"--lr must be a non-negative number, got {rate}");
            if (p.GetValue(warmup) < 0) throw new CliException("--warmup-steps must be ≥ 0");
            if (p.GetValue(clip) is double g && !(g > 0)) throw new CliException("--max-grad-norm must be positive");
            if (!(p.GetValue(wd) >= 0) || double.IsInfinity(p.GetValue(wd))) throw new CliException($"--weight-decay must be a non-negative number, got {p.GetValue(wd)}");
            string? dir = p.GetValue(model), initPath = p.GetValue(init), tokensPath = p.GetValue(tokens), textPath = p.GetValue(text);
            if ((dir is null) == (initPath is null)) throw new CliException("give either --model DIR (a checkpoint to train) or --init CONFIG.json (fresh weights)");
            // Before any work: the trained weights, config and tokenizer would be written over the checkpoint being read.
            if (dir is not null && p.GetValue(outDir) is string target) OutputFolders.RefuseModelFolder(dir, target, "fine-tuned model");
            if ((tokensPath is null) == (textPath is null)) throw new CliException("give either --tokens FILE.jsonl (token ids) or --text FILE.jsonl (documents)");
            if (textPath is not null && p.GetValue(seqLen) is not int) throw new CliException("--text needs --seq-len N (tokens per window)");
            if (p.GetValue(seqLen) is int sl && (sl < 2 || textPath is null)) throw new CliException(textPath is null ? "--seq-len goes with --text" : "--seq-len must be at least 2");
            string sched = p.GetValue(schedule)!;
            if (sched is not ("constant" or "cosine")) throw new CliException($"--schedule must be constant or cosine, got '{sched}'");
            int validCount = p.GetValue(valid);
            if (validCount < 0) throw new CliException("--valid-windows must be ≥ 0");
            DType? writeDType = p.GetValue(outDtype) switch
            {
                null => null,
                "f32" or "float32" => DType.F32,
                "bf16" or "bfloat16" => DType.BF16,
                var other => throw new CliException($"--out-dtype must be f32 or bf16, got '{other}'"),
            };

            string? tokenizerPath = p.GetValue(tokenizer) ?? (dir is not null && File.Exists(Path.Combine(dir, "tokenizer.json")) ? Path.Combine(dir, "tokenizer.json") : null);
            if (tokenizerPath is not null && !File.Exists(tokenizerPath)) throw new CliException($"--tokenizer {tokenizerPath}: file not found");
            BpeTokenizer? tok = tokenizerPath is null ? null : BpeTokenizer.Load(tokenizerPath);
            if (textPath is not null && tok is null) throw new CliException("--text needs a tokenizer: give --tokenizer FILE (or a --model with tokenizer.json)");

            // Under mpirun every rank runs this command; rank r trains on its B/N rows of each step, rank 0 alone prints and writes.
            using var group = DistributedCli.Join(p.GetValue(zero), dev);
            if (b % group.WorldSize != 0) throw new CliException($"--batch {b} is the global batch and must be a multiple of the {group.WorldSize} ranks");
            return DistributedCli.Guard(group, "train-lm", () => TrainOn(group));
            int TrainOn(global::Parrot.Tensors.Distributed.ProcessGroup group)
            {
            bool main = group.IsMain;
            var console = main ? Console.Out : TextWriter.Null;
            // Before training, not after it: an --out that cannot be written would otherwise waste the whole run.
            if (main && p.GetValue(outDir) is string outPath)
            {
                try { Directory.CreateDirectory(outPath); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new CliException($"--out {outPath}: cannot create the directory: {e.Message}"); }
            }
            var sourceDType = dir is null ? DType.F32 : PeekDType(dir);
            using var m = dir is not null ? Qwen2Loader.Load(dir, DType.F32) : new Qwen2ForCausalLM(FreshConfig(initPath!, tok), p.GetValue(seed));
            m.To(dev);
            if (tok is not null && tok.IdCount > m.Config.VocabSize)
                throw new CliException($"the tokenizer has {tok.IdCount} ids but the model's vocab_size is {m.Config.VocabSize}");
            // Positions past max_position_embeddings train a checkpoint whose config.json says it cannot be used at
            // that length (our own generate/serve refuse such prompts): say so before any work, not never.
            int context = m.Config.MaxPositionEmbeddings;
            string configFile = initPath ?? Path.Combine(dir!, "config.json");
            if (p.GetValue(seqLen) is int windowLength && windowLength > context)
                throw new CliException($"--seq-len {windowLength} is longer than max_position_embeddings {context} in {configFile}: use --seq-len ≤ {context}, or raise max_position_embeddings");
            List<int[]> seqs;
            if (textPath is not null)
            {
                seqs = TextWindows.Read(textPath, tok!, p.GetValue(seqLen)!.Value, out int docs, p.GetValue(specials));
                console.WriteLine($"{textPath}: {docs} documents → {seqs.Count} windows of {seqs[0].Length} tokens");
            }
            else
            {
                seqs = TokenSequences.Read(tokensPath!, m.Config.VocabSize);
                if (seqs.Max(x => x.Length) is int longest && longest > context)
                    throw new CliException($"{tokensPath}: sequences of {longest} tokens are longer than max_position_embeddings {context} in {configFile}: cut them to at most {context} tokens, or raise max_position_embeddings");
            }
            List<int[]> held = [];
            if (validCount > 0)
            {
                if (validCount >= seqs.Count) throw new CliException($"--valid-windows {validCount} leaves nothing to train on ({seqs.Count} sequences)");
                held = seqs.GetRange(seqs.Count - validCount, validCount);
                seqs = seqs.GetRange(0, seqs.Count - validCount);
            }
            if (initPath is not null) console.WriteLine($"fresh model: {m.ParameterCount():N0} parameters (vocab {m.Config.VocabSize}, width {m.Config.HiddenSize}, {m.Config.NumHiddenLayers} layers, {m.Config.NumAttentionHeads} heads, {m.Config.NumKeyValueHeads} kv heads)");
            if (held.Count > 0 && main) console.WriteLine($"validation loss before training: {CausalLmTrainer.Evaluate(m, held, b):F4} ({held.Count} held-out sequences)");
            var logPath = p.GetValue(log)!;
            var logDir = Path.GetDirectoryName(Path.GetFullPath(logPath));
            if (logDir is not null && main) Directory.CreateDirectory(logDir);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var trainer = new CausalLmTrainer(m, new CausalLmOptions
            {
                Steps = n, Batch = b, LearningRate = rate, WeightDecay = p.GetValue(wd), WarmupSteps = p.GetValue(warmup),
                MaxGradNorm = p.GetValue(clip), Seed = p.GetValue(seed), Shuffle = p.GetValue(shuffle), Cosine = sched == "cosine",
                ZeroStage = p.GetValue(zero),
            }) { Group = group };
            if (group.WorldSize > 1) console.WriteLine($"data parallel: {group.WorldSize} ranks ({group.Backend}), {b / group.WorldSize} sequences per rank per step, ZeRO-{p.GetValue(zero)}");
            List<StepRecord> records;
            using (var writer = main ? new StreamWriter(logPath, append: false) : StreamWriter.Null)
            {
                records = trainer.Train(seqs, r =>
                {
                    writer.WriteLine(CausalLmTrainer.LogLine(r));
                    writer.Flush();
                    console.WriteLine($"step {r.Step}: loss {r.Loss:F4}  lr {r.LearningRate:G4}  grad_norm {r.GradNorm:F4}  ({r.Seconds * 1000:F0} ms)");
                    if (r.Step == 1 && group.WorldSize > 1 && trainer.Memory is { } mem) console.WriteLine($"memory per rank (ZeRO-{p.GetValue(zero)}): {mem}");
                });
            }
            console.WriteLine($"trained {n} steps in {clock.Elapsed.TotalSeconds:F1} s");
            if (held.Count > 0 && main) console.WriteLine($"validation loss after training: {CausalLmTrainer.Evaluate(m, held, b):F4}");
            if (main && p.GetValue(outDir) is string o)
            {
                Qwen2Loader.Save(m, o, writeDType ?? sourceDType);
                if (dir is not null) CopyTokenizerFiles(dir, o);
                if (tokenizerPath is not null && Path.GetFullPath(tokenizerPath) != Path.GetFullPath(Path.Combine(o, "tokenizer.json")))
                    File.Copy(tokenizerPath, Path.Combine(o, "tokenizer.json"), overwrite: true);
                LossPlot.Save(Path.Combine(o, "loss.png"), "train-lm", ("train", records.Select(r => (double)r.Step).ToArray(), records.Select(r => r.Loss).ToArray()));
                Console.WriteLine($"wrote {o}");
            }
            return 0;
            }
        }));
        return cmd;
    }

    /// <summary>
    /// The Qwen2 config of a fresh model: <paramref name="path"/>, with vocab_size taken from the tokenizer when
    /// left out, and eos_token_id from its &lt;|im_end|&gt; and &lt;|endoftext|&gt; when left out.
    /// </summary>
    private static Qwen2Config FreshConfig(string path, BpeTokenizer? tokenizer)
    {
        string json;
        try { json = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new CliException($"--init {path}: cannot read: {e.Message}"); }
        JsonObject o;
        try { o = JsonNode.Parse(json) as JsonObject ?? throw new CliException($"--init {path}: the config must be a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new CliException($"--init {path}: not valid JSON: {e.Message}"); }
        // Before the lookups below: one unreadable key (an escaped lone surrogate) made each throw InvalidOperationException.
        if (JsonText.FindUnreadable(json) is { } bad) throw new CliException($"--init {path}: {bad} {JsonText.NotText}");
        o["model_type"] ??= "qwen2";
        if (!o.ContainsKey("vocab_size"))
            o["vocab_size"] = tokenizer?.IdCount ?? throw new CliException($"--init {path}: no vocab_size, and no tokenizer to take it from");
        // Said before the config is validated: the tokenizer's eos ids added below would otherwise be reported as
        // outside the vocabulary, which hides the real mismatch.
        if (tokenizer is not null && o["vocab_size"] is JsonValue v && v.TryGetValue(out int vocab) && tokenizer.IdCount > vocab)
            throw new CliException($"the tokenizer has {tokenizer.IdCount} ids but the model's vocab_size is {vocab}");
        if (!o.ContainsKey("eos_token_id") && tokenizer is not null)
        {
            var eos = new[] { "<|im_end|>", "<|endoftext|>" }.Select(tokenizer.TokenToId).OfType<int>().ToArray();
            if (eos.Length > 0) o["eos_token_id"] = new JsonArray(eos.Select(i => (JsonNode?)i).ToArray());
        }
        return Qwen2ConfigJson.Parse(o.ToJsonString(), path);
    }

    /// <summary>The dtype the checkpoint stores its embedding table in (the trained model is written back in it).</summary>
    private static DType PeekDType(string dir)
    {
        using var ck = global::Parrot.Tensors.Formats.SafetensorsCheckpoint.Open(dir);
        return ck.TryGetInfo("model.embed_tokens.weight", out var info) && info.DType is DType d ? d : DType.F32;
    }

    /// <summary>The tokenizer files of <paramref name="from"/> into <paramref name="to"/> (never the same folder: --out = --model is refused).</summary>
    private static void CopyTokenizerFiles(string from, string to)
    {
        foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json", "generation_config.json", "vocab.json", "merges.txt" })
        {
            var src = Path.Combine(from, name);
            if (File.Exists(src)) File.Copy(src, Path.Combine(to, name), overwrite: true);
        }
    }
}
