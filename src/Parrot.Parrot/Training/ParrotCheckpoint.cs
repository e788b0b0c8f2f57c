using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Autograd;
using Parrot.Nn.Optim;
using Parrot.Parrot.Model;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Training;

/// <summary>
/// Where a run stands: steps done, the run's length, and the data order's epoch and offset; the data it trains on (its
/// sample count and <see cref="Data.LlavaDataset.Fingerprint"/>; null in checkpoints written before it was recorded).
/// </summary>
internal sealed record ParrotTrainerPosition(int Step, int TotalSteps, int Epoch, int Offset, int DataCount, string? DataFingerprint = null);

/// <summary>
/// A training checkpoint directory <c>checkpoint-{step}</c>: the model (config.json + model.safetensors,
/// no vision tower), <c>optimizer.safetensors</c> (AdamW moments <c>m/{name}</c>, <c>v/{name}</c> and, in
/// bf16, the float32 masters <c>master/{name}</c>) and <c>trainer_state.json</c> (stage, step, optimizer
/// step count, epoch and offset of the data order, seed, bf16, learning rate, global batch, the data's sample count
/// <c>data_count</c> and fingerprint <c>data_fingerprint</c>: see <see cref="Data.LlavaDataset.Fingerprint"/>). It is written into a temporary directory and
/// renamed into place, so a run killed while saving leaves the previous checkpoint as the latest.
/// </summary>
public static class ParrotCheckpoint
{
    private const string StateFile = "trainer_state.json", OptimizerFile = "optimizer.safetensors", Prefix = "checkpoint-";

    /// <summary>The checkpoint with the highest step under <paramref name="outputDir"/>, or null.</summary>
    public static string? Latest(string outputDir)
    {
        if (!Directory.Exists(outputDir)) return null;
        return Directory.GetDirectories(outputDir, Prefix + "*")
            .Select(d => (Dir: d, Ok: int.TryParse(Path.GetFileName(d)[Prefix.Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int s), Step: s))
            .Where(x => x.Ok && File.Exists(Path.Combine(x.Dir, StateFile)))
            .OrderByDescending(x => x.Step).Select(x => x.Dir).FirstOrDefault();
    }

    internal static string Write(string outputDir, int step, ParrotForCausalLM model, ParrotTrainingOptions options,
        IReadOnlyList<(string Name, Variable Parameter)> trainable, Optimizer optimizer, ParrotTrainerPosition position)
    {
        Directory.CreateDirectory(outputDir);
        var final = Path.Combine(outputDir, Prefix + step.ToString(CultureInfo.InvariantCulture));
        var tmp = Path.Combine(outputDir, $".{Prefix}{step}.tmp-{Environment.ProcessId}");
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        Directory.CreateDirectory(tmp);

        ParrotLoader.Save(model, tmp, config: model.Config with { UseMoe = options.Stage == 2 });
        using (var scope = TensorScope.Begin())
        {
            var tensors = new List<KeyValuePair<string, Tensor>>();
            foreach (var (name, p) in trainable)
            {
                switch (optimizer)
                {
                    case AdamW a when a.State(p) is var (m, v):
                        tensors.Add(new("m/" + name, m)); tensors.Add(new("v/" + name, v));
                        break;
                    case MixedPrecisionAdamW mp:
                        var (mm, vv) = mp.Moments(p);
                        tensors.Add(new("m/" + name, mm)); tensors.Add(new("v/" + name, vv));
                        tensors.Add(new("master/" + name, mp.Master(p)));
                        break;
                }
            }
            Safetensors.Save(Path.Combine(tmp, OptimizerFile), tensors);
        }
        var state = new JsonObject
        {
            ["stage"] = options.Stage,
            ["step"] = position.Step,
            ["total_steps"] = position.TotalSteps,
            ["optimizer_steps"] = optimizer.StepCount,
            ["epoch"] = position.Epoch,
            ["offset"] = position.Offset,
            ["data_count"] = position.DataCount,
            ["seed"] = options.Seed,
            ["bf16"] = options.Bf16,
            ["learning_rate"] = options.LearningRate,
            ["global_batch"] = options.GlobalBatch,
            ["data_fingerprint"] = position.DataFingerprint,
        };
        File.WriteAllText(Path.Combine(tmp, StateFile), state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
        Directory.Move(tmp, final);
        return final;
    }

    /// <summary>
    /// Reads a checkpoint into the model and optimizer after checking it belongs to this run (stage, seed, bf16, learning
    /// rate, global batch, and the data: <paramref name="data"/>'s file, sample count and fingerprint) — all before any
    /// weight is loaded.
    /// </summary>
    internal static ParrotTrainerPosition Read(string dir, ParrotForCausalLM model, ParrotTrainingOptions options,
        IReadOnlyList<(string Name, Variable Parameter)> trainable, Optimizer optimizer, Data.LlavaDataset data)
    {
        var statePath = Path.Combine(dir, StateFile);
        if (!File.Exists(statePath)) throw new InvalidDataException($"{dir}: not a training checkpoint (no {StateFile})");
        JsonObject s;
        string stateJson = File.ReadAllText(statePath);
        try { s = JsonNode.Parse(stateJson) as JsonObject ?? throw new InvalidDataException($"{statePath}: expected a JSON object"); }
        catch (JsonException e) { throw new InvalidDataException($"{statePath}: malformed JSON: {e.Message}", e); }
        // A string that cannot be read as text (an escaped lone surrogate) made the first key lookup, or the fingerprint's
        // read, throw InvalidOperationException naming neither the file nor the key.
        if (JsonText.FindUnreadable(stateJson) is { } bad) throw new InvalidDataException($"{statePath}: {bad} {JsonText.NotText}");
        // Typed reads that name the file and key: GetValue alone throws "cannot be converted" without either.
        T Get<T>(string key, T? fallback = null) where T : struct
        {
            var v = s[key];
            if (v is null) return fallback ?? throw new InvalidDataException($"{statePath}: no '{key}'");
            try { return v.GetValue<T>(); }
            catch (Exception e) when (e is InvalidOperationException or FormatException) { throw new InvalidDataException($"{statePath}: '{key}' is {v.ToJsonString()}, not {(typeof(T) == typeof(bool) ? "true or false" : "an integer")}", e); }
        }
        int Int(string key) => Get<int>(key);
        double Number(string key)
        {
            var v = s[key]!;
            try { return v.GetValue<double>(); }
            catch (Exception e) when (e is InvalidOperationException or FormatException) { throw new InvalidDataException($"{statePath}: '{key}' is {v.ToJsonString()}, not a number", e); }
        }
        if (Int("stage") != options.Stage) throw new InvalidDataException($"{dir}: the checkpoint is from stage {Int("stage")}, this run is stage {options.Stage}");
        if (Get<ulong>("seed", 0) != options.Seed) throw new InvalidDataException($"{dir}: the checkpoint used seed {s["seed"]}, this run {options.Seed}: the data order would differ");
        if (Get<bool>("bf16", false) != options.Bf16) throw new InvalidDataException($"{dir}: the checkpoint was trained with bf16={s["bf16"]}, this run bf16={options.Bf16}");
        // Recorded with every checkpoint and checked like the seed: a resumed run with another --lr or --batch
        // went on silently with another schedule or another data position, not the run it claims to continue.
        if (s["learning_rate"] is not null && Number("learning_rate") != options.LearningRate)
            throw new InvalidDataException($"{dir}: the checkpoint's run has learning rate {Number("learning_rate").ToString("R", CultureInfo.InvariantCulture)}, this one {options.LearningRate.ToString("R", CultureInfo.InvariantCulture)}: the schedule would differ (start a new run to change it)");
        if (s["global_batch"] is not null && Int("global_batch") != options.GlobalBatch)
            throw new InvalidDataException($"{dir}: the checkpoint's run has a global batch of {Int("global_batch")}, this one {options.GlobalBatch}: the data position and the schedule would differ");
        string? fingerprint = s["data_fingerprint"] switch
        {
            null => null, // written before the field was: such a checkpoint still resumes, with the sample count checked alone
            JsonValue v when v.TryGetValue<string>(out var f) && f.Length > 0 => f,
            var v => throw new InvalidDataException($"{statePath}: 'data_fingerprint' is {v.ToJsonString()}, not a fingerprint string"),
        };
        var position = new ParrotTrainerPosition(Int("step"), Int("total_steps"), Int("epoch"), Int("offset"), Int("data_count"), fingerprint);
        if (position.Step < 0 || position.Step > position.TotalSteps || position.Epoch < 0 || position.Offset < 0 || position.Offset > position.DataCount)
            throw new InvalidDataException($"{statePath}: inconsistent position: step {position.Step} of {position.TotalSteps}, epoch {position.Epoch}, offset {position.Offset} of {position.DataCount} samples");
        if (position.DataCount != data.Examples.Count)
            throw new InvalidDataException($"{dir}: the checkpoint was trained on {position.DataCount} samples, the data now has {data.Examples.Count}: resuming would visit a different order");
        // The count alone let a resumed run on another data set of the same size go on silently, with other samples in
        // the order the checkpoint's offset points into.
        if (fingerprint is not null && fingerprint != data.Fingerprint)
            throw new InvalidDataException($"{dir}: the checkpoint's run trained on a different dataset: its data fingerprint is {fingerprint}, "
                + $"this run's data ({data.File}, {data.Examples.Count} samples) has {data.Fingerprint} (the samples' ids, images, languages or tokens, or their order, differ); "
                + "resuming would continue on other samples than the run it claims to continue: start a new run (another output folder) to train on this data");

        // Copy into the live tensors (not replace them): the optimizer holds float32 parameters as its masters.
        using (var ck = SafetensorsCheckpoint.Open(dir))
        using (var scope = TensorScope.Begin())
        {
            foreach (var (name, p) in model.NamedParameters())
            {
                if (name.StartsWith("model.vision_tower.", StringComparison.Ordinal)) continue;
                if (!ck.TryGetInfo(name, out var info)) throw new InvalidDataException($"{dir}: the checkpoint has no '{name}'");
                if (!info.Shape.SequenceEqual(p.Shape)) throw new InvalidDataException($"{dir}: '{name}' is {Tensor.FormatShape(info.Shape)} in the checkpoint, {p.Value.ShapeString()} in the model");
                p.Value.CopyFrom(ck.Load(name, p.DType));
            }
        }
        var optPath = Path.Combine(dir, OptimizerFile);
        if (!File.Exists(optPath)) throw new InvalidDataException($"{dir}: no {OptimizerFile}");
        using (var scope = TensorScope.Begin())
        {
            var saved = Safetensors.LoadAll(optPath);
            foreach (var (name, p) in trainable)
            {
                bool hasM = saved.TryGetValue("m/" + name, out var m), hasV = saved.TryGetValue("v/" + name, out var v);
                if (!hasM || !hasV) continue; // never updated (no gradient reached it yet)
                switch (optimizer)
                {
                    case AdamW a: a.SetState(p, m!, v!); break;
                    case MixedPrecisionAdamW mp:
                        if (!saved.TryGetValue("master/" + name, out var master)) throw new InvalidDataException($"{optPath}: no master weights for '{name}'");
                        mp.SetState(p, master, m!, v!);
                        break;
                }
            }
            foreach (var t in saved.Values) t.Dispose();
        }
        optimizer.StepCount = Get<long>("optimizer_steps");
        return position;
    }
}
