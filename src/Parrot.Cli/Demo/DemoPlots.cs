using ScottPlot;

namespace Parrot.Cli.Demo;

/// <summary>The demo's bar charts (ScottPlot PNGs, written atomically).</summary>
internal static class DemoPlots
{
    /// <summary>
    /// Grouped bars: one group per entry of <paramref name="groups"/>, one bar per series in each group
    /// (<c>values[s][g]</c>), a legend naming the series.
    /// </summary>
    public static void GroupedBars(string path, string title, string yLabel, IReadOnlyList<string> groups,
        IReadOnlyList<(string Label, double[] Values)> series, double? yMax = null)
    {
        var plt = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        double width = 0.8 / series.Count;
        for (int s = 0; s < series.Count; s++)
        {
            var color = palette.GetColor(s);
            var bars = new List<Bar>();
            for (int g = 0; g < groups.Count; g++)
                bars.Add(new Bar { Position = g + (s - (series.Count - 1) / 2.0) * width, Value = series[s].Values[g], FillColor = color, Size = width * 0.95 });
            plt.Add.Bars(bars);
            plt.Legend.ManualItems.Add(new LegendItem { LabelText = series[s].Label, FillColor = color });
        }
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, groups.Count).Select(g => (double)g).ToArray(), groups.ToArray());
        plt.Axes.Margins(bottom: 0);
        if (yMax is double top) plt.Axes.SetLimitsY(0, top);
        plt.Title(title);
        plt.YLabel(yLabel);
        plt.ShowLegend(Alignment.UpperRight);
        using var image = plt.GetImage(900, 500);
        global::Parrot.Tensors.Formats.AtomicFile.WriteAllBytes(path, image.GetImageBytes(ImageFormat.Png, 100));
    }
}
