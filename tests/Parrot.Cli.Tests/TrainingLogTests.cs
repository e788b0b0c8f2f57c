namespace Parrot.Cli.Tests;

/// <summary>
/// Reading back train_log.jsonl: train --resume cuts it back to the checkpoint's step, and train / pretrain-vision plot it.
/// An unreadable line used to throw a bare JsonException, KeyNotFoundException or InvalidOperationException naming
/// neither file nor line (plotting: after the model was written, failing the finished run), or, when resuming, was
/// dropped without a word wherever it was.
/// </summary>
public class TrainingLogTests
{
    private static string Log(params string[] lines)
    {
        var path = Path.Combine(CliRunner.TempDir(), "train_log.jsonl");
        File.WriteAllText(path, string.Concat(lines.Select(l => l + "\n")));
        return path;
    }

    private static string Step(int step, double loss = 1.5) => $"{{\"step\":{step},\"loss\":{loss},\"lr\":0.001,\"loss_en\":{loss + 0.25}}}";

    [Test]
    public void ResumeCutsTheLogBackToTheCheckpointsStep()
    {
        var path = Log(Step(1), "", Step(2), Step(3), Step(4));
        Assert.That(TrainingLog.CutBack(path, 2), Is.Null);
        Assert.That(File.ReadAllLines(path), Is.EqualTo(new[] { Step(1), Step(2) }));
    }

    /// <summary>A run killed while writing a line leaves it cut short, with no newline: resuming drops it and says so.</summary>
    [Test]
    public void ResumeDropsAHalfWrittenLastLine()
    {
        var path = Log(Step(1), Step(2), Step(3));
        File.AppendAllText(path, Step(4)[..12]); // {"step":4,"l
        var note = TrainingLog.CutBack(path, 3);
        Assert.That(note, Does.Contain(path + ":4:").And.Contain("half-written last line").And.Contain("not complete JSON"));
        Assert.That(File.ReadAllLines(path), Is.EqualTo(new[] { Step(1), Step(2), Step(3) }));

        // Cut short by a crash of the machine instead: the file's end is zeros the data never reached.
        path = Log(Step(1), Step(2));
        File.AppendAllText(path, "\0\0\0\0");
        Assert.That(TrainingLog.CutBack(path, 2), Does.Contain(path + ":3:"));
        Assert.That(File.ReadAllLines(path), Is.EqualTo(new[] { Step(1), Step(2) }));
    }

    /// <summary>
    /// What a stop can leave at the end, and logs saved with other line ends: a complete last line followed by the start
    /// of the next, CRLF line ends, blank lines at the end, an empty file. Only the cut-short line goes.
    /// </summary>
    [Test]
    public void ResumeHandlesTheEndsAStopOrAnEditorLeaves()
    {
        var path = Log(Step(1), Step(2));
        File.AppendAllText(path, Step(3)[..5]); // {"ste: the line after a complete one, cut short
        Assert.That(TrainingLog.CutBack(path, 5), Does.Contain(path + ":3:"));
        Assert.That(File.ReadAllLines(path), Is.EqualTo(new[] { Step(1), Step(2) }));

        path = Log();
        File.WriteAllText(path, Step(1) + "\r\n" + Step(2) + "\r\n" + Step(3) + "\r\n\r\n\n  \n");
        Assert.That(TrainingLog.CutBack(path, 2), Is.Null);
        Assert.That(File.ReadAllText(path), Is.EqualTo(Step(1) + Environment.NewLine + Step(2) + Environment.NewLine));

        // A cut-short line followed by blank lines is still the last line.
        path = Log(Step(1), "{\"step\":2,", "", "");
        Assert.That(TrainingLog.CutBack(path, 5), Does.Contain(path + ":2:"));
        Assert.That(File.ReadAllLines(path), Is.EqualTo(new[] { Step(1) }));

        path = Log();
        File.WriteAllText(path, "");
        Assert.That(TrainingLog.CutBack(path, 5), Is.Null);
        Assert.That(File.ReadAllText(path), Is.Empty);
    }

    /// <summary>Every line the trainer writes, whatever its keys, passes the cut-back and the plot (an existing good log still resumes).</summary>
    [Test]
    public void LinesTheTrainersWriteAreReadable()
    {
        var langs = new Dictionary<string, double> { ["en"] = 1.25, ["zh"] = 2.5, ["中文 \"x\""] = 0.5 };
        var lines = Enumerable.Range(1, 3).Select(i => new global::Parrot.Parrot.Training.ParrotStepMetrics(i, 3, 1.0 / i, 1e-5, 1e-300, long.MaxValue, 7, 0, langs)
            { WorldSize = 4, Zero = 2 }.ToJson()).ToArray();
        var path = Log(lines);
        Assert.That(TrainingLog.CutBack(path, 3), Is.Null);
        Assert.That(File.ReadAllLines(path), Is.EqualTo(lines));
        var (rows, warnings) = TrainingLog.ReadForPlot(path, k => k.StartsWith("loss_", StringComparison.Ordinal));
        Assert.That((rows.Count, warnings.Count), Is.EqualTo((3, 0)));
        Assert.That(rows[0].Numbers.Keys, Does.Contain("loss_中文 \"x\""));
        // A non-finite loss never reaches the log as "NaN": the trainer stops first, and the serializer refuses it anyway.
        Assert.Throws<ArgumentException>(() => new global::Parrot.Parrot.Training.ParrotStepMetrics(4, 4, double.NaN, 1e-5, 1, 1, 1, 1, langs).ToJson());

        var valid = new Dictionary<string, double> { ["loss"] = 1.5, ["acc_scene"] = 0.25 };
        path = Log(new global::Parrot.Parrot.Training.VisionStepRecord(1, 2.0, 1e-3, 0.5, 123.45, null).ToJson(),
                   new global::Parrot.Parrot.Training.VisionStepRecord(2, 1.0, 1e-3, 0.5, 123.45, valid).ToJson());
        (rows, warnings) = TrainingLog.ReadForPlot(path, k => k == "valid_loss");
        Assert.That((rows.Count, warnings.Count), Is.EqualTo((2, 0)));
        Assert.That(TrainingLog.Curve(rows, "valid_loss").Y, Is.EqualTo(new[] { 1.5 }));
    }

    /// <summary>Any other unreadable line is no crash's doing: resuming stops before training, naming file, line and problem.</summary>
    [TestCase("{\"step\":2,\"lo", "2: not complete JSON")]
    [TestCase("{\"loss\":1.5}", "2: no \"step\"")]
    [TestCase("{\"step\":\"two\",\"loss\":1.5}", "2: \"step\" is \"two\", not a step number")]
    [TestCase("{\"step\":2.5,\"loss\":1.5}", "2: \"step\" is 2.5, not a step number")]
    [TestCase("[2, 1.5]", "2: a JSON array, not an object")]
    [TestCase("{\"step\":2,\"loss\":1.5,\"\\ud800\":1}", "2: a key of $ is not valid text")]
    [TestCase("{\"step\":2,\"loss\":1.5,\"note\":\"\\udc00\"}", "2: the string at $.note is not valid text")]
    public void ResumeRefusesAnUnreadableLineBeforeTheLast(string bad, string expected)
    {
        var path = Log(Step(1), bad, Step(3));
        var before = File.ReadAllText(path);
        var e = Assert.Throws<InvalidDataException>(() => TrainingLog.CutBack(path, 3));
        Assert.That(e!.Message, Does.StartWith($"{path}:{expected}").And.Contain("--resume"));
        Assert.That(File.ReadAllText(path), Is.EqualTo(before), "the log is left as it was");
    }

    /// <summary>
    /// The cut-back log replaces the old one by a rename, which used to give it the default mode of a new file (a log
    /// kept private by chmod 600 became readable by everyone under a 022 umask). It keeps the old file's mode.
    /// </summary>
    [Test]
    public void ResumeKeepsTheLogsPermissions()
    {
        if (OperatingSystem.IsWindows()) { Assert.Ignore("Unix file modes"); return; }
        var path = Log(Step(1), Step(2), Step(3));
        const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        File.SetUnixFileMode(path, Private);
        TrainingLog.CutBack(path, 2);
        Assert.That(File.GetUnixFileMode(path), Is.EqualTo(Private));
        Assert.That(File.ReadAllLines(path), Is.EqualTo(new[] { Step(1), Step(2) }));
    }

    /// <summary>
    /// A --log that is a symbolic link (to a shared results folder, say) is cut back where it points: the rename used to
    /// put a plain file in the link's place, so the target kept the steps the resumed run repeats and got none of its new
    /// ones. The link stays a link, and no temporary file is left beside either.
    /// </summary>
    [Test]
    public void ResumeCutsBackTheFileALinkPointsTo()
    {
        if (OperatingSystem.IsWindows()) { Assert.Ignore("symbolic links need privileges on Windows"); return; }
        var target = Log(Step(1), Step(2), Step(3));
        var linkDir = CliRunner.TempDir();
        var link = Path.Combine(linkDir, "train_log.jsonl");
        File.CreateSymbolicLink(link, target);
        Assert.That(TrainingLog.CutBack(link, 2), Is.Null);
        Assert.That(new FileInfo(link).LinkTarget, Is.EqualTo(target), "still a link to the same file");
        Assert.That(File.ReadAllLines(target), Is.EqualTo(new[] { Step(1), Step(2) }));
        File.AppendAllText(link, Step(3) + "\n");
        Assert.That(File.ReadAllLines(target), Is.EqualTo(new[] { Step(1), Step(2), Step(3) }), "what the resumed run appends reaches the target");
        Assert.That(Directory.GetFiles(linkDir), Is.EqualTo(new[] { link }));
        Assert.That(Directory.GetFiles(Path.GetDirectoryName(target)!), Is.EqualTo(new[] { target }));

        // A link made relative to its own folder (ln -s ../run/train_log.jsonl) is followed from there, not from here.
        var relative = Path.Combine(linkDir, "relative.jsonl");
        File.CreateSymbolicLink(relative, Path.GetRelativePath(linkDir, target));
        TrainingLog.CutBack(relative, 1);
        Assert.That(File.ReadAllLines(target), Is.EqualTo(new[] { Step(1) }));
        Assert.That(new FileInfo(relative).LinkTarget, Is.Not.Null);
    }

    /// <summary>The last line may only be cut short: complete JSON without a step is refused there too.</summary>
    [Test]
    public void ResumeRefusesACompleteLastLineWithoutAStep()
    {
        var path = Log(Step(1), "{\"loss\":1.5}");
        var e = Assert.Throws<InvalidDataException>(() => TrainingLog.CutBack(path, 3));
        Assert.That(e!.Message, Does.StartWith($"{path}:2: no \"step\""));
    }

    [Test]
    public void ThePlotLeavesOutUnreadableLinesAndNamesThem()
    {
        var path = Log(Step(1, 2.0), "{\"step\":2,\"lo", Step(3, 1.0), "{\"step\":4}", "{\"step\":5,\"loss\":\"nan\"}",
                       "{\"step\":6,\"loss\":1,\"loss_en\":\"x\"}", "{\"step\":7,\"loss\":1,\"\\ud800\":1}", Step(8, 0.5));
        var (rows, warnings) = TrainingLog.ReadForPlot(path, k => k.StartsWith("loss_", StringComparison.Ordinal));
        Assert.That(rows.Select(r => (r.Line, r.Step)), Is.EqualTo(new[] { (1, 1), (3, 3), (8, 8) }));
        var (x, y) = TrainingLog.Curve(rows, "loss");
        Assert.That(x, Is.EqualTo(new double[] { 1, 3, 8 }));
        Assert.That(y, Is.EqualTo(new[] { 2.0, 1.0, 0.5 }));
        Assert.That(TrainingLog.Curve(rows, "loss_en").Y, Is.EqualTo(new[] { 2.25, 1.25, 0.75 }));
        Assert.That(warnings, Has.Count.EqualTo(TrainingLog.WarningsShown + 1));
        Assert.That(warnings[0], Does.StartWith($"{path}:2: not complete JSON").And.EndWith("left out of the plot"));
        Assert.That(warnings[1], Does.StartWith($"{path}:4: no \"loss\""));
        Assert.That(warnings[2], Does.StartWith($"{path}:5: \"loss\" is \"nan\", not a finite number"));
        Assert.That(warnings[3], Is.EqualTo($"{path}: 2 more unreadable lines left out of the plot (5 in all)"));

        // Keys that are not curves may hold anything.
        (rows, warnings) = TrainingLog.ReadForPlot(Log("{\"step\":1,\"loss\":1,\"note\":\"resumed\",\"loss_en\":\"x\"}"), _ => false);
        Assert.That((rows.Count, warnings.Count), Is.EqualTo((1, 0)));
    }

    /// <summary>Both commands' plots draw what they can read of a damaged log instead of throwing after the run.</summary>
    [Test]
    public void TrainAndPretrainVisionPlotADamagedLog()
    {
        var path = Log(Step(1, 2.0), "{\"step\":2,\"loss\":1.5,\"loss_en\":[1]}", "{\"step\":3,\"loss\":1.2,\"valid_loss\":1.4}", "{\"step\":4,\"lo");
        var png = Path.Combine(Path.GetDirectoryName(path)!, "train.png");
        TrainCommand.PlotCurves(path, png, 1);
        Assert.That(new FileInfo(png).Length, Is.GreaterThan(0));
        png = Path.Combine(Path.GetDirectoryName(path)!, "vision.png");
        PretrainVisionCommand.PlotCurves(path, png);
        Assert.That(new FileInfo(png).Length, Is.GreaterThan(0));
    }
}
