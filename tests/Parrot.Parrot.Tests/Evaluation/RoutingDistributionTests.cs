using Parrot.Parrot.Evaluation;

namespace Parrot.Parrot.Tests.Evaluation;

public class RoutingDistributionTests
{
    [Test]
    public void MeansPerLanguageMatchAHandComputedCase()
    {
        var d = new RoutingDistribution(3);
        d.Add("en", [0.5, 0.3, 0.2]);
        d.Add("zh", [1.0, 0.0, 0.0]);
        d.Add("en", [0.1, 0.6, 0.3]);
        d.Add("en", [0.3, 0.3, 0.4]);
        // en: (0.5+0.1+0.3)/3 = 0.3, (0.3+0.6+0.3)/3 = 0.4, (0.2+0.3+0.4)/3 = 0.3
        Assert.That(d.Mean("en"), Is.EqualTo(new[] { 0.3, 0.4, 0.3 }).Within(1e-15));
        Assert.That(d.Mean("zh"), Is.EqualTo(new[] { 1.0, 0.0, 0.0 }));
        Assert.That(d.Count("en"), Is.EqualTo(3));
        Assert.That(d.Count("zh"), Is.EqualTo(1));
        Assert.That(d.Count("ru"), Is.Zero);
        Assert.That(d.Languages, Is.EqualTo(new[] { "en", "zh" }));
        Assert.That(d.TopExpert("en"), Is.EqualTo(1));
        Assert.That(d.TopExpert("zh"), Is.EqualTo(0));
    }

    [Test]
    public void RejectsWrongSizesNonFiniteWeightsAndUnknownLanguages()
    {
        var d = new RoutingDistribution(2);
        Assert.That(() => d.Add("en", [0.5, 0.25, 0.25]), Throws.ArgumentException.With.Message.Contains("expected 2"));
        Assert.That(() => d.Add("en", [double.NaN, 1]), Throws.ArgumentException.With.Message.Contains("not finite"));
        Assert.That(() => d.Mean("ar"), Throws.TypeOf<KeyNotFoundException>().With.Message.Contains("'ar'"));
        Assert.That(() => new RoutingDistribution(0), Throws.TypeOf<ArgumentOutOfRangeException>());
    }
}
