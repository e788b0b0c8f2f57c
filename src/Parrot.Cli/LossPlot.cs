using ScottPlot;

namespace Parrot.Cli;

/// <summary>Loss curves as PNG files (ScottPlot, rendered headless).</summary>
internal static class LossPlot
{
    /// <summary>Writes a PNG with one line per series (x = step) to <paramref name="path"/>, atomically.</summary>
    public static void Save(string path, string title, params (string Label, double[] X, double[] Y)[] series)
    {
        var plt = new Plot();
        foreach (var (label, x, y) in series)
        {
            var s = plt.Add.Scatter(x, y);
            s.LegendText = label;
            s.MarkerSize = x.Length > 60 ? 0 : 4;
        }
        plt.Title(title);
        plt.XLabel("step");
        plt.YLabel("loss (nats/token)");
        plt.ShowLegend(Alignment.UpperRight); // losses fall: the upper right is where the curves are not
        using var image = plt.GetImage(800, 500);
        global::Parrot.Tensors.Formats.AtomicFile.WriteAllBytes(path, image.GetImageBytes(ImageFormat.Png, 100));
    }
}
