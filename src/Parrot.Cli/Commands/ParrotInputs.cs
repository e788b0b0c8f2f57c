using System.CommandLine;
using Parrot.Parrot.Model;
using Parrot.Parrot.Vision;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// The image inputs `forward` and `generate` share: `--image FILE` for Parrot model directories, the image
/// placeholder -200 in `--tokens`, and `--vision DIR` overriding the config's mm_vision_tower.
/// </summary>
internal static class ParrotInputs
{
    public static Option<string?> ImageOption() => new("--image")
    {
        Description = $"Image file (JPEG, PNG, WebP, GIF, BMP) for a Parrot model directory; its visual tokens replace the placeholder {ParrotSample.ImageToken} in --tokens",
    };

    public static Option<string?> VisionOption() => new("--vision")
    {
        Description = "CLIP vision tower folder, overriding the config's mm_vision_tower (Parrot model directories)",
    };

    /// <summary>
    /// The error for a --vision that is no folder, naming it as resolved: like every path flag, --vision is taken from the
    /// current directory (config.json's mm_vision_tower, from the model directory).
    /// </summary>
    public static string NotAFolder(string vision)
    {
        string full = Path.GetFullPath(vision);
        return $"--vision: {full} is not a directory" + (full == vision ? "" : $" (--vision {vision}, from the current directory)");
    }

    /// <summary>
    /// Checks the image arguments against the model directory and the ids, and for a Parrot directory loads it
    /// (in <paramref name="dtype"/>, the tower only when an image is given) and the image; null for a text-only Qwen2 directory.
    /// </summary>
    public static (ParrotModelDirectory Model, RgbImage? Image)? Open(string dir, int[] ids, string? imagePath, string? vision, DType dtype)
    {
        int places = ids.Count(i => i == ParrotSample.ImageToken);
        if (!ParrotModelDirectory.IsParrotDirectory(dir))
        {
            if (imagePath is not null)
                throw new CliException($"--image: {dir} is not a Parrot model directory (its config.json does not say model_type parrot_qwen2): a text-only Qwen2 model takes no images");
            if (vision is not null)
                throw new CliException($"--vision: {dir} is not a Parrot model directory (model_type parrot_qwen2): a text-only Qwen2 model has no vision tower");
            if (places > 0)
                throw new CliException($"--tokens: {ParrotSample.ImageToken} is the image placeholder, but {dir} is a text-only Qwen2 model (not model_type parrot_qwen2)");
            return null;
        }
        if (places > 1) throw new CliException($"--tokens: the image placeholder {ParrotSample.ImageToken} appears {places} times; one image per prompt is supported");
        if (places == 1 && imagePath is null) throw new CliException($"--tokens has the image placeholder {ParrotSample.ImageToken} but no --image was given");
        if (places == 0 && imagePath is not null)
            throw new CliException($"--image was given but --tokens has no image placeholder {ParrotSample.ImageToken}: put {ParrotSample.ImageToken} where the image goes (write --tokens=... when the list starts with it)");
        // With the MoE on, the image is routed on the prompt's text embeddings: an image alone stopped deep inside
        // the model with "LanguageMoe: the prompt has no text tokens to steer the routing".
        if (places == 1 && ids.Length == 1 && ParrotConfig.Load(Path.Combine(dir, "config.json")).UseMoe)
            throw new CliException($"--tokens: the prompt is the image placeholder {ParrotSample.ImageToken} alone; Parrot's MoE routes the image on the prompt's text, so give at least one text token too");
        if (vision is not null && !Directory.Exists(vision)) throw new CliException(NotAFolder(vision));
        RgbImage? image = null;
        if (imagePath is not null)
        {
            try { image = ImageLoader.Load(imagePath); }
            catch (ImageLoadException e) { throw new CliException($"--image: {e.Message}"); }
        }
        var model = ParrotModelDirectory.Load(dir, dtype, vision, loadVision: image is not null);
        try
        {
            int vocab = model.Model.Config.Text.VocabSize;
            foreach (var id in ids)
                if (id != ParrotSample.ImageToken && (id < 0 || id >= vocab))
                    throw new CliException($"--tokens: id {id} is outside the vocabulary [0, {vocab})");
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return (model, image);
    }
}
