namespace Parrot.WebUi.Tests;

public class Scratch
{
    [Test, Explicit]
    public void WriteModels()
    {
        WebUiModels.WriteRandomParrot("/tmp/webui-models/random");
        Assert.That(WebUiModels.WriteAssetsParrot("/tmp/webui-models/assets"), Is.Not.Null);
    }
}
