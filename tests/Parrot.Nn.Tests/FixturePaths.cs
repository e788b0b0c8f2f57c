namespace Parrot.Nn.Tests;

internal static class FixturePaths
{
    /// <summary>Absolute path of a file under the test output's Fixtures folder.</summary>
    public static string Get(params string[] parts) => Path.Combine([TestContext.CurrentContext.TestDirectory, "Fixtures", .. parts]);
}
