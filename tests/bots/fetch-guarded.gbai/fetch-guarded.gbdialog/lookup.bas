PARAM url AS URL LIKE "https://shop.example/products/fax" DESCRIPTION "The product's URL"
DESCRIPTION "Look up a product's price"
product = GET url
RETURN product.price
