TALK "Which product URL?"
HEAR url
product = GET url
TALK "The " + product.name + " costs " + product.price + "."
