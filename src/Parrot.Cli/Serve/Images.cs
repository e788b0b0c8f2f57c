using System.Text.Json;
using Parrot.Parrot.Vision;

namespace Parrot.Cli.Serve;

/// <summary>
/// Images of a request: only <c>data:image/...;base64,...</c> URLs are taken (the server never fetches from
/// the network); the bytes are decoded by <see cref="ImageLoader"/> under the server's pixel and size limits.
/// </summary>
internal static class Images
{
    public static RgbImage Decode(JsonElement part, string at, ServeOptions limits)
    {
        if (ChatRequestParser.Field(part, "image_url") is not { } iu) throw ApiException.BadRequest($"'{at}.image_url' is required", $"{at}.image_url");
        JsonElement? urlField = iu.ValueKind == JsonValueKind.Object ? ChatRequestParser.Field(iu, "url") : iu.ValueKind == JsonValueKind.String ? iu : null;
        if (urlField is not { ValueKind: JsonValueKind.String } u) throw ApiException.BadRequest($"'{at}.image_url.url' is required and must be a string", $"{at}.image_url.url");
        string param = $"{at}.image_url.url";
        string url = u.GetString()!;
        if (url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
            throw ApiException.BadRequest("remote image URLs are not allowed: this server never fetches from the network; send the image inline as a data:image/...;base64,... URL", param, "remote_image_url_not_allowed");
        if (!url.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
            throw ApiException.BadRequest("the image URL must be a data:image/...;base64,... URL", param, "invalid_image_url");
        int comma = url.IndexOf(',');
        if (comma < 0) throw ApiException.BadRequest("the data URL has no ',' before its data", param, "invalid_image_url");
        string header = url[5..comma];
        var attrs = header.Split(';');
        if (!attrs[0].StartsWith("image/", StringComparison.OrdinalIgnoreCase))
            throw ApiException.BadRequest($"the data URL's media type is '{ChatRequestParser.Clip(attrs[0])}', not an image type (image/png, image/jpeg, …)", param, "invalid_image_url");
        if (!attrs.Skip(1).Any(a => a.Equals("base64", StringComparison.OrdinalIgnoreCase)))
            throw ApiException.BadRequest("the data URL must be base64-encoded (data:image/...;base64,...)", param, "invalid_image_url");
        var data = url.AsSpan(comma + 1);
        var bytes = new byte[data.Length / 4 * 3 + 3];
        if (!Convert.TryFromBase64Chars(data, bytes, out int written))
            throw ApiException.BadRequest("the image data is not valid base64", param, "invalid_image");
        try
        {
            return ImageLoader.Load(bytes.AsSpan(0, written).ToArray(), new ImageLimits { MaxPixels = limits.MaxImagePixels, MaxEncodedBytes = limits.MaxBodyBytes }, "the image");
        }
        catch (ImageLoadException e)
        {
            bool tooLarge = e.Failure is ImageLoadFailure.TooManyPixels or ImageLoadFailure.TooManyBytes;
            throw ApiException.BadRequest(e.Message, param, tooLarge ? "image_too_large" : "invalid_image");
        }
        catch (Exception e) when (e is not OutOfMemoryException and not ApiException)
        {
            // A decoder failure the loader did not classify is still bad input, never a server error.
            throw ApiException.BadRequest($"the image could not be decoded: {e.Message}", param, "invalid_image");
        }
    }
}
